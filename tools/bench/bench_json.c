/* A strict JSON parser (RFC 8259) for --validate: submissions come from strangers, so
 * everything the RFC leaves to implementations is refused here: duplicate keys, NUL in
 * strings, unpaired surrogates, invalid UTF-8, numbers out of double range, nesting deeper
 * than 64, bytes after the value. */
#include "bench_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct parser {
	const char *s;
	size_t len, pos, line;
	char *err;
	size_t cap;
	int failed;
} parser;

static int json_fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int json_fail(parser *p, const char *fmt, ...)
{
	if (p->failed)
		return -1;
	p->failed = 1;
	int n = snprintf(p->err, p->cap, "line %zu: ", p->line);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < p->cap)
		vsnprintf(p->err + n, p->cap - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void skip_ws(parser *p)
{
	while (p->pos < p->len) {
		char c = p->s[p->pos];
		if (c == '\n')
			p->line++;
		else if (c != ' ' && c != '\t' && c != '\r')
			break;
		p->pos++;
	}
}

/* Out of memory ends the program (bench_xrealloc), so a half-built tree never exists. */
static void *grow(void *ptr, size_t n, size_t size)
{
	return bench_xrealloc(ptr, n * size);
}

static int hex4(parser *p, unsigned *out)
{
	if (p->len - p->pos < 4)
		return json_fail(p, "truncated \\u escape");
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p->s[p->pos++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return json_fail(p, "bad \\u escape");
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
	         : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (!l || l > n || c == 0xc0 || c == 0xc1 || c > 0xf4)
		return 0;
	for (size_t i = 1; i < l; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (l == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)))
		return 0;
	if (l == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)))
		return 0;
	return l;
}

static int parse_string(parser *p, char **out, size_t *out_len)
{
	p->pos++; /* opening quote */
	size_t cap = 16, n = 0;
	char *o = bench_xmalloc(cap);
	for (;;) {
		if (p->pos >= p->len) {
			free(o);
			return json_fail(p, "unterminated string");
		}
		if (n + 8 > cap) {
			cap *= 2;
			o = grow(o, cap, 1);
		}
		unsigned char c = (unsigned char)p->s[p->pos];
		if (c == '"') {
			p->pos++;
			break;
		}
		if (c < 0x20) {
			free(o);
			return json_fail(p, "control character in string");
		}
		if (c != '\\') {
			size_t l = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
			if (!l) {
				free(o);
				return json_fail(p, "invalid UTF-8 in string");
			}
			memcpy(o + n, p->s + p->pos, l);
			n += l;
			p->pos += l;
			continue;
		}
		p->pos++;
		if (p->pos >= p->len) {
			free(o);
			return json_fail(p, "unterminated string");
		}
		char e = p->s[p->pos++];
		unsigned cp;
		switch (e) {
		case '"': o[n++] = '"'; break;
		case '\\': o[n++] = '\\'; break;
		case '/': o[n++] = '/'; break;
		case 'b': o[n++] = '\b'; break;
		case 'f': o[n++] = '\f'; break;
		case 'n': o[n++] = '\n'; break;
		case 'r': o[n++] = '\r'; break;
		case 't': o[n++] = '\t'; break;
		case 'u':
			if (hex4(p, &cp)) {
				free(o);
				return -1;
			}
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				free(o);
				return json_fail(p, "unpaired low surrogate");
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;
				if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
					free(o);
					return json_fail(p, "unpaired high surrogate");
				}
				p->pos += 2;
				if (hex4(p, &lo)) {
					free(o);
					return -1;
				}
				if (lo < 0xdc00 || lo > 0xdfff) {
					free(o);
					return json_fail(p, "unpaired high surrogate");
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0) {
				free(o);
				return json_fail(p, "NUL character in string");
			}
			n += put_utf8(o + n, cp);
			break;
		default:
			free(o);
			return json_fail(p, "bad escape '\\%c'", e);
		}
	}
	o[n] = '\0';
	*out = o;
	*out_len = n;
	return 0;
}

static int parse_number(parser *p, bench_json *v)
{
	size_t i = p->pos;
	const char *s = p->s;
	int integer = 1;
	if (i < p->len && s[i] == '-')
		i++;
	if (i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
		return json_fail(p, "bad number");
	if (s[i] == '0') {
		i++;
		if (i < p->len && s[i] >= '0' && s[i] <= '9')
			return json_fail(p, "leading zero in number");
	} else {
		while (i < p->len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < p->len && s[i] == '.') {
		integer = 0;
		i++;
		if (i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
			return json_fail(p, "bad number: digit expected after '.'");
		while (i < p->len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
		integer = 0;
		i++;
		if (i < p->len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
			return json_fail(p, "bad number: digit expected in exponent");
		while (i < p->len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	size_t n = i - p->pos;
	if (n > 64)
		return json_fail(p, "number longer than 64 characters");
	char buf[72];
	memcpy(buf, s + p->pos, n);
	buf[n] = '\0';
	errno = 0;
	double d = strtod(buf, NULL);
	if (!isfinite(d) || (errno == ERANGE && fabs(d) > 1))
		return json_fail(p, "number out of range");
	v->type = BJ_NUMBER;
	v->num = d;
	v->is_integer = integer;
	p->pos = i;
	return 0;
}

static int parse_value(parser *p, bench_json *v, int depth);

static int parse_array(parser *p, bench_json *v, int depth)
{
	v->type = BJ_ARRAY;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ']') {
		p->pos++;
		return 0;
	}
	size_t cap = 0;
	for (;;) {
		if (v->len == cap) {
			cap = cap ? 2 * cap : 8;
			v->items = grow(v->items, cap, sizeof(bench_json));
		}
		memset(&v->items[v->len], 0, sizeof(bench_json));
		v->len++;
		if (parse_value(p, &v->items[v->len - 1], depth + 1))
			return -1;
		skip_ws(p);
		if (p->pos >= p->len)
			return json_fail(p, "unterminated array");
		char c = p->s[p->pos++];
		if (c == ']')
			return 0;
		if (c != ',')
			return json_fail(p, "',' or ']' expected in array");
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ']')
			return json_fail(p, "trailing comma in array");
	}
}

static int parse_object(parser *p, bench_json *v, int depth)
{
	v->type = BJ_OBJECT;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '}') {
		p->pos++;
		return 0;
	}
	size_t cap = 0;
	for (;;) {
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != '"')
			return json_fail(p, "string key expected in object");
		char *key;
		size_t kl;
		if (parse_string(p, &key, &kl))
			return -1;
		for (size_t i = 0; i < v->len; i++)
			if (!strcmp(v->keys[i], key)) {
				int r = json_fail(p, "duplicate key \"%.60s\"", key);
				free(key);
				return r;
			}
		if (v->len == cap) {
			cap = cap ? 2 * cap : 8;
			v->keys = grow(v->keys, cap, sizeof(char *));
			v->items = grow(v->items, cap, sizeof(bench_json));
		}
		v->keys[v->len] = key;
		memset(&v->items[v->len], 0, sizeof(bench_json));
		v->len++;
		skip_ws(p);
		if (p->pos >= p->len || p->s[p->pos] != ':')
			return json_fail(p, "':' expected after key");
		p->pos++;
		if (parse_value(p, &v->items[v->len - 1], depth + 1))
			return -1;
		skip_ws(p);
		if (p->pos >= p->len)
			return json_fail(p, "unterminated object");
		char c = p->s[p->pos++];
		if (c == '}')
			return 0;
		if (c != ',')
			return json_fail(p, "',' or '}' expected in object");
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == '}')
			return json_fail(p, "trailing comma in object");
	}
}

static int literal(parser *p, const char *word, int type, bench_json *v)
{
	size_t n = strlen(word);
	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n))
		return json_fail(p, "unexpected character '%c'", p->s[p->pos]);
	p->pos += n;
	v->type = type;
	return 0;
}

static int parse_value(parser *p, bench_json *v, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return json_fail(p, "nesting deeper than %d", JSON_MAX_DEPTH);
	skip_ws(p);
	v->line = p->line;
	if (p->pos >= p->len)
		return json_fail(p, "value expected");
	switch (p->s[p->pos]) {
	case '{': return parse_object(p, v, depth);
	case '[': return parse_array(p, v, depth);
	case '"':
		v->type = BJ_STRING;
		return parse_string(p, &v->str, &v->len);
	case 't': return literal(p, "true", BJ_TRUE, v);
	case 'f': return literal(p, "false", BJ_FALSE, v);
	case 'n': return literal(p, "null", BJ_NULL, v);
	default: return parse_number(p, v);
	}
}

int bench_json_parse(const char *text, size_t len, bench_json *out, char *err, size_t cap)
{
	parser p = {text, len, 0, 1, err, cap, 0};
	memset(out, 0, sizeof(*out));
	if (len >= 3 && (unsigned char)text[0] == 0xef && (unsigned char)text[1] == 0xbb &&
	    (unsigned char)text[2] == 0xbf) {
		json_fail(&p, "byte order mark (RFC 8259 8.1: must not be added)");
		return -1;
	}
	if (parse_value(&p, out, 0) == 0) {
		skip_ws(&p);
		if (p.pos != p.len)
			json_fail(&p, "bytes after the JSON value");
	}
	if (p.failed) {
		bench_json_free(out);
		return -1;
	}
	return 0;
}

void bench_json_free(bench_json *v)
{
	if (!v)
		return;
	if (v->type == BJ_STRING)
		free(v->str);
	if (v->type == BJ_ARRAY || v->type == BJ_OBJECT) {
		for (size_t i = 0; i < v->len; i++) {
			bench_json_free(&v->items[i]);
			if (v->type == BJ_OBJECT)
				free(v->keys[i]);
		}
		free(v->items);
		free(v->keys);
	}
	memset(v, 0, sizeof(*v));
}

const bench_json *bench_json_get(const bench_json *obj, const char *key)
{
	if (!obj || obj->type != BJ_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->len; i++)
		if (!strcmp(obj->keys[i], key))
			return &obj->items[i];
	return NULL;
}
