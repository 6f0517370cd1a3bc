/*
 * A strict JSON lexer (RFC 8259) for the safetensors header. There is no tree: the caller
 * walks the grammar it expects, and anything it does not know is skipped by a loop with an
 * explicit stack, so a nesting bomb costs neither recursion nor memory.
 */
#include "io_internal.h"

int alcm_io_json_error(alcm_io_json *j, int status, const char *err)
{
	if (!j->status) {
		j->status = status;
		j->err = err;
		j->err_pos = j->pos;
	}
	return j->status;
}

void alcm_io_json_ws(alcm_io_json *j)
{
	while (j->pos < j->len && (j->p[j->pos] == ' ' || j->p[j->pos] == '\t' ||
	                           j->p[j->pos] == '\n' || j->p[j->pos] == '\r'))
		j->pos++;
}

int alcm_io_json_peek(alcm_io_json *j)
{
	alcm_io_json_ws(j);
	return j->pos < j->len ? j->p[j->pos] : -1;
}

int alcm_io_json_expect(alcm_io_json *j, char c)
{
	if (alcm_io_json_peek(j) != (unsigned char)c) {
		switch (c) {
		case ':': return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ':'");
		case ',': return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ','");
		case '{': return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected an object");
		case '[': return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected an array");
		case ']': return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ']'");
		default: return alcm_io_json_error(j, ALCM_E_CORRUPT, "unexpected character");
		}
	}
	j->pos++;
	return ALCM_OK;
}

static int hex4(const uint8_t *p, uint32_t *v)
{
	uint32_t x = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];
		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

static int unicode_escape(alcm_io_json *j, uint32_t *cp)
{
	/* j->pos is at the backslash of "\uXXXX" */
	if (j->len - j->pos < 6 || hex4(j->p + j->pos + 2, cp))
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "bad \\u escape");
	if (*cp >= 0xdc00 && *cp <= 0xdfff)
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "unpaired surrogate in a \\u escape");
	if (*cp < 0xd800 || *cp > 0xdbff) {
		j->pos += 6;
		return ALCM_OK;
	}
	uint32_t lo;
	if (j->len - j->pos < 12 || j->p[j->pos + 6] != '\\' || j->p[j->pos + 7] != 'u' ||
	    hex4(j->p + j->pos + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "unpaired surrogate in a \\u escape");
	*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
	j->pos += 12;
	return ALCM_OK;
}

int alcm_io_json_string(alcm_io_json *j, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = 0;
#define PUT(c)                                                                                  \
	do {                                                                                    \
		if (n < cap)                                                                    \
			out[n] = (uint8_t)(c);                                                  \
		n++;                                                                            \
	} while (0)
	if (alcm_io_json_peek(j) != '"')
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected a string");
	j->pos++;
	for (;;) {
		if (j->pos >= j->len)
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "unterminated string");
		uint8_t c = j->p[j->pos];
		if (c == '"') {
			j->pos++;
			break;
		}
		if (c < 0x20)
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "control character in a string");
		if (c != '\\') {
			PUT(c);
			j->pos++;
			continue;
		}
		if (j->len - j->pos < 2)
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "unterminated string");
		uint8_t e = j->p[j->pos + 1];
		uint32_t cp;
		switch (e) {
		case '"':
		case '\\':
		case '/': cp = e; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (unicode_escape(j, &cp))
				return j->status;
			if (cp < 0x80) {
				PUT(cp);
			} else if (cp < 0x800) {
				PUT(0xc0 | (cp >> 6));
				PUT(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				PUT(0xe0 | (cp >> 12));
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			} else {
				PUT(0xf0 | (cp >> 18));
				PUT(0x80 | ((cp >> 12) & 0x3f));
				PUT(0x80 | ((cp >> 6) & 0x3f));
				PUT(0x80 | (cp & 0x3f));
			}
			continue;
		default: return alcm_io_json_error(j, ALCM_E_CORRUPT, "invalid escape in a string");
		}
		PUT(cp);
		j->pos += 2;
	}
#undef PUT
	*len = n;
	return ALCM_OK;
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int at(const alcm_io_json *j, size_t i)
{
	return i < j->len ? j->p[i] : -1;
}

int alcm_io_json_u64(alcm_io_json *j, uint64_t *v)
{
	int c = alcm_io_json_peek(j);
	size_t start = j->pos;
	uint64_t x = 0;
	if (c == '-')
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "negative number");
	if (!is_digit(c))
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected an unsigned integer");
	if (c == '0' && is_digit(at(j, j->pos + 1)))
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "number with a leading zero");
	while (is_digit(at(j, j->pos))) {
		unsigned d = (unsigned)(j->p[j->pos] - '0');
		if (x > (UINT64_MAX - d) / 10) {
			j->pos = start;
			return alcm_io_json_error(j, ALCM_E_LIMIT, "integer exceeds 2^64-1");
		}
		x = x * 10 + d;
		j->pos++;
	}
	c = at(j, j->pos);
	if (c == '.' || c == 'e' || c == 'E')
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected an integer, not a fraction");
	*v = x;
	return ALCM_OK;
}

static int skip_number(alcm_io_json *j)
{
	if (at(j, j->pos) == '-')
		j->pos++;
	if (at(j, j->pos) == '0') {
		j->pos++;
	} else if (is_digit(at(j, j->pos))) {
		while (is_digit(at(j, j->pos)))
			j->pos++;
	} else {
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "malformed number");
	}
	if (at(j, j->pos) == '.') {
		j->pos++;
		if (!is_digit(at(j, j->pos)))
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "malformed number");
		while (is_digit(at(j, j->pos)))
			j->pos++;
	}
	if (at(j, j->pos) == 'e' || at(j, j->pos) == 'E') {
		j->pos++;
		if (at(j, j->pos) == '+' || at(j, j->pos) == '-')
			j->pos++;
		if (!is_digit(at(j, j->pos)))
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "malformed number");
		while (is_digit(at(j, j->pos)))
			j->pos++;
	}
	return ALCM_OK;
}

static int skip_literal(alcm_io_json *j, const char *word)
{
	size_t n = strlen(word);
	if (j->len - j->pos < n || memcmp(j->p + j->pos, word, n) != 0)
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "unexpected character");
	j->pos += n;
	return ALCM_OK;
}

static int skip_scalar(alcm_io_json *j)
{
	size_t len;
	switch (alcm_io_json_peek(j)) {
	case '"': return alcm_io_json_string(j, NULL, 0, &len);
	case 't': return skip_literal(j, "true");
	case 'f': return skip_literal(j, "false");
	case 'n': return skip_literal(j, "null");
	case -1: return alcm_io_json_error(j, ALCM_E_CORRUPT, "unexpected end of the header");
	default: return skip_number(j);
	}
}

static int member_key(alcm_io_json *j)
{
	size_t len;
	if (alcm_io_json_string(j, NULL, 0, &len))
		return j->status;
	return alcm_io_json_expect(j, ':');
}

int alcm_io_json_skip(alcm_io_json *j, unsigned depth)
{
	uint8_t stack[ALCM_IO_JSON_DEPTH];
	unsigned sp = 0;
	if (depth > ALCM_IO_JSON_DEPTH)
		depth = ALCM_IO_JSON_DEPTH;
	for (;;) {
		int c = alcm_io_json_peek(j);
		if (c == '{' || c == '[') {
			if (sp >= depth)
				return alcm_io_json_error(j, ALCM_E_LIMIT, "JSON nesting is too deep");
			stack[sp++] = (uint8_t)c;
			j->pos++;
			int d = alcm_io_json_peek(j);
			if ((c == '{' && d == '}') || (c == '[' && d == ']')) {
				j->pos++;
				sp--;
			} else {
				if (c == '{' && member_key(j))
					return j->status;
				continue;
			}
		} else if (skip_scalar(j)) {
			return j->status;
		}
		for (;;) {
			if (sp == 0)
				return ALCM_OK;
			int d = alcm_io_json_peek(j);
			uint8_t top = stack[sp - 1];
			if (d == ',') {
				j->pos++;
				if (top == '{' && member_key(j))
					return j->status;
				break;
			}
			if ((d == '}' && top == '{') || (d == ']' && top == '[')) {
				j->pos++;
				sp--;
				continue;
			}
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or a closing bracket");
		}
	}
}

/* Escapes as serde_json does: short forms for \b \f \n \r \t, \u00xx for other controls. */
void alcm_io_json_put_string(alcm_io_sb *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	alcm_io_sb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[7] = {'\\', 0, 0, 0, 0, 0, 0};
		size_t el = 2;
		switch (c) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		default:
			if (c >= 0x20) {
				alcm_io_sb_put(b, &s[i], 1);
				continue;
			}
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			el = 6;
		}
		alcm_io_sb_put(b, e, el);
	}
	alcm_io_sb_put(b, "\"", 1);
}
