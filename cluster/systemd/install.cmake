# install.cmake: run by `cmake --install` (cluster/CMakeLists.txt), not at
# configure time, so the paths written into the units and the example
# settings are those of the prefix given then (cmake --install BUILD
# --prefix DIR). MAIL_SYSTEMD_SRC is this folder.
#
# Where things go, GNU's rule (GNUInstallDirs): configuration and state
# under the prefix (PREFIX/etc/mail, PREFIX/var/lib/mail), but /etc/mail
# and /var/lib/mail for the prefix /usr.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(sysconfdir "/etc")
  set(localstatedir "/var")
else()
  set(sysconfdir "${prefix}/etc")
  set(localstatedir "${prefix}/var")
endif()
set(BINDIR "${prefix}/bin")
set(DOCDIR "${prefix}/share/doc/mail")
set(MAILCONFDIR "${sysconfdir}/mail")
set(MAILSTATEDIR "${localstatedir}/lib/mail")
set(ETCDSTATEDIR "${localstatedir}/lib/etcd/mail")

# configure_file(@ONLY) into DESTDIR + dest; "-- Installing:" as install() says it
function(mail_install_configured src dest)
  set(out "$ENV{DESTDIR}${dest}")
  message(STATUS "Installing: ${out}")
  configure_file("${MAIL_SYSTEMD_SRC}/${src}" "${out}" @ONLY)
endfunction()

foreach(unit mail-store@.service mail-queue@.service mail-frontend@.service mail-etcd.service)
  mail_install_configured(${unit} "${prefix}/lib/systemd/system/${unit}")
endforeach()
# examples only: an operator's own files (cluster.env, store-1.env...) are
# never overwritten by an upgrade
foreach(example cluster.env store.env queue.env frontend.env etcd.env mailctl.conf)
  mail_install_configured(${example}.example "${MAILCONFDIR}/${example}.example")
endforeach()
