/* security-keys.h: the etcd keys of the security state every frontend
 * reads and mailctl edits (docs/security.md).
 *
 *   /mail/v1/blocks/<ip>          {"reason":..,"by":..,"at":ms}, under a lease
 *                                 (an automatic block) or none (an operator's)
 *   /mail/v1/tls/certs/<domain>   {"cert":PEM chain,"key":PEM,"at":ms}
 */
#ifndef MAIL_SECURITY_KEYS_H
#define MAIL_SECURITY_KEYS_H

#define BLOCK_KEY_PREFIX "/mail/v1/blocks/"
#define TLS_CERT_KEY_PREFIX "/mail/v1/tls/certs/"

#endif
