/* rspamd-response.c: rspamd's /checkv2 answer read with jansson
 * (rspamd-response.h). The JSON comes from the network: every field is
 * type-checked, every count and length bounded, every string made safe
 * before it leaves this file. */
#include "rspamd-response.h"

#include "xalloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const struct {
	const char *name;
	enum rspamd_action action;
} rspamd__actions[] = {
	{ "no action", RSPAMD_ACTION_NO_ACTION },
	{ "greylist", RSPAMD_ACTION_GREYLIST },
	{ "add header", RSPAMD_ACTION_ADD_HEADER },
	{ "rewrite subject", RSPAMD_ACTION_REWRITE_SUBJECT },
	{ "soft reject", RSPAMD_ACTION_SOFT_REJECT },
	{ "reject", RSPAMD_ACTION_REJECT },
	/* rspamd's other built-in actions, read as ours (the header says why) */
	{ "discard", RSPAMD_ACTION_REJECT },
	{ "quarantine", RSPAMD_ACTION_ADD_HEADER },
};

const char *rspamd_action_name(enum rspamd_action action)
{
	/* the first rows are the enum, in order */
	if ((unsigned)action <= RSPAMD_ACTION_REJECT)
		return rspamd__actions[action].name;
	return "unknown";
}

/* rspamd writes "add header"; its configuration (and old versions) say
 * "add_header": either reads. */
static int rspamd__action_parse(const char *s, enum rspamd_action *action_r)
{
	char word[32];
	size_t len = strlen(s);
	if (len >= sizeof word)
		return -1;
	for (size_t i = 0; i <= len; i++)
		word[i] = s[i] == '_' ? ' ' : s[i];
	for (size_t i = 0; i < sizeof rspamd__actions / sizeof rspamd__actions[0]; i++) {
		if (strcmp(word, rspamd__actions[i].name) == 0) {
			*action_r = rspamd__actions[i].action;
			return 0;
		}
	}
	return -1;
}

static void rspamd__error(struct rspamd_parsed *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rspamd__error(struct rspamd_parsed *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out->error, sizeof out->error, fmt, ap);
	va_end(ap);
	/* jansson's texts and rspamd's quoted here: printable ASCII only */
	for (char *p = out->error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	}
}

static double rspamd__clamp(double v)
{
	if (!isfinite(v))
		return 0; /* jansson never gives one; a caller's struct might */
	if (v > RSPAMD_SCORE_ABS_MAX)
		return RSPAMD_SCORE_ABS_MAX;
	if (v < -RSPAMD_SCORE_ABS_MAX)
		return -RSPAMD_SCORE_ABS_MAX;
	return v;
}

/* Copy s into out (size bytes with the NUL): control bytes and DEL become
 * a space; cut at a UTF-8 character boundary (jansson checked the
 * encoding). */
static void rspamd__copy_text(char *out, size_t size, const char *s)
{
	size_t len = strlen(s);
	if (len > size - 1) {
		len = size - 1;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		out[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	out[len] = '\0';
}

static int rspamd__name_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-';
}

struct rspamd__sym {
	const char *name; /* jansson's key: valid while the document is */
	double score;
};

static int rspamd__sym_cmp(const void *a, const void *b)
{
	const struct rspamd__sym *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* out->symbols from the "symbols" object: the best-scoring that fit. */
static void rspamd__symbols(json_t *symbols, struct rspamd_parsed *out)
{
	size_t n = json_object_size(symbols);
	size_t take = n < RSPAMD_PARSE_SYMBOLS_MAX ? n : RSPAMD_PARSE_SYMBOLS_MAX;
	out->n_symbols = n > 0xffffffffu ? 0xffffffffu : (unsigned)n;
	out->n_unseen = (unsigned)(n - take);
	if (take == 0)
		return;
	struct rspamd__sym *syms = xcalloc(take, sizeof *syms);
	size_t k = 0;
	const char *key;
	json_t *value;
	json_object_foreach(symbols, key, value) {
		if (k == take)
			break;
		if (key[0] == '\0')
			continue;
		json_t *score = json_is_object(value) ? json_object_get(value, "score") : NULL;
		syms[k].name = key;
		syms[k].score = json_is_number(score) ? rspamd__clamp(json_number_value(score)) : 0;
		k++;
	}
	qsort(syms, k, sizeof *syms, rspamd__sym_cmp);
	size_t len = 0;
	for (size_t i = 0; i < k; i++) {
		char item[RSPAMD_SYMBOL_NAME_MAX + 32];
		size_t m = 0;
		if (len > 0)
			item[m++] = ',';
		const char *p = syms[i].name;
		for (size_t j = 0; p[j] != '\0' && j < RSPAMD_SYMBOL_NAME_MAX; j++)
			item[m++] = rspamd__name_char((unsigned char)p[j]) ? p[j] : '_';
		/* clamped: at most "(-1000000.00)" */
		m += (size_t)snprintf(item + m, sizeof item - m, "(%.2f)", syms[i].score);
		if (len + m > RSPAMD_SYMBOLS_LEN_MAX)
			break;
		memcpy(out->symbols + len, item, m);
		len += m;
	}
	out->symbols[len] = '\0';
	free(syms);
}

static int rspamd__read(json_t *root, struct rspamd_parsed *out)
{
	if (!json_is_object(root)) {
		rspamd__error(out, "not a JSON object");
		return -1;
	}
	json_t *action = json_object_get(root, "action");
	if (action == NULL) {
		json_t *err = json_object_get(root, "error");
		if (json_is_string(err))
			rspamd__error(out, "rspamd error: %.100s", json_string_value(err));
		else
			rspamd__error(out, "no action");
		return -1;
	}
	if (!json_is_string(action)) {
		rspamd__error(out, "action is not a string");
		return -1;
	}
	if (rspamd__action_parse(json_string_value(action), &out->action) < 0) {
		rspamd__error(out, "unknown action \"%.40s\"", json_string_value(action));
		return -1;
	}
	json_t *score = json_object_get(root, "score");
	if (!json_is_number(score)) {
		rspamd__error(out, "no score");
		return -1;
	}
	out->score = rspamd__clamp(json_number_value(score));
	json_t *required = json_object_get(root, "required_score");
	if (json_is_number(required))
		out->required_score = rspamd__clamp(json_number_value(required));

	json_t *symbols = json_object_get(root, "symbols");
	if (json_is_object(symbols))
		rspamd__symbols(symbols, out);
	json_t *messages = json_object_get(root, "messages");
	json_t *smtp = json_is_object(messages) ? json_object_get(messages, "smtp_message") : NULL;
	if (json_is_string(smtp))
		rspamd__copy_text(out->message, sizeof out->message, json_string_value(smtp));
	json_t *subject = json_object_get(root, "subject");
	if (json_is_string(subject))
		rspamd__copy_text(out->subject, sizeof out->subject, json_string_value(subject));
	return 0;
}

int rspamd_parse_response(const char *body, size_t len, struct rspamd_parsed *out)
{
	memset(out, 0, sizeof *out);
	out->action = RSPAMD_ACTION_NO_ACTION;
	if (len > RSPAMD_RESPONSE_BYTES_MAX) {
		rspamd__error(out, "over %u bytes", RSPAMD_RESPONSE_BYTES_MAX);
		return -1;
	}
	json_error_t jerr;
	/* JSON_REJECT_DUPLICATES: two "action" members would make the
	 * verdict depend on which one we read */
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rspamd__error(out, "not JSON: %s at byte %d", jerr.text, jerr.position);
		return -1;
	}
	int r = rspamd__read(root, out);
	json_decref(root);
	if (r < 0) {
		/* a failed read leaves nothing half-filled */
		char error[sizeof out->error];
		memcpy(error, out->error, sizeof error);
		memset(out, 0, sizeof *out);
		memcpy(out->error, error, sizeof error);
	}
	return r;
}
