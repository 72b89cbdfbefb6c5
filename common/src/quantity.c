// Kubernetes resource quantities parsed exactly, with no floating point (see quantity.h).
#include "vmlet/quantity.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define SUFFIXES "n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<exponent>"

// A quantity taken apart: sign * digits * 10^exp10 * 2^exp2.
typedef struct {
    bool negative;
    const char *int_digits; // digits before the point (may be empty)
    size_t int_len;
    const char *frac_digits; // digits after the point (may be empty)
    size_t frac_len;
    int64_t exp10;
    int exp2;
} parts_t;

static bool s_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

// The characters resource.Quantity's scanner takes as the start of a suffix.
static bool s_is_suffix_letter(char c)
{
    return c && strchr("eEinumkKMGTP", c) != NULL;
}

// "e<signed integer>" or "E<signed integer>"; Kubernetes keeps the exponent in
// an int32, so anything wider is refused rather than wrapped.
static int s_parse_exponent(const char *text, const char *s, int64_t *exp10, vmlet_err_t *err)
{
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return vmlet_err_set(err, "quantity '%s': exponent has no digits", text);
    int64_t value = 0;
    for (; *s; s++) {
        if (!s_is_digit(*s))
            return vmlet_err_set(err, "quantity '%s': unknown suffix (use " SUFFIXES ")", text);
        value = value * 10 + (*s - '0');
        if (value > INT32_MAX)
            return vmlet_err_set(err, "quantity '%s': exponent out of range", text);
    }
    *exp10 = neg ? -value : value;
    return 0;
}

static int s_interpret_suffix(const char *text, const char *suffix, parts_t *q, vmlet_err_t *err)
{
    static const struct {
        const char *name;
        int exp10;
        int exp2;
    } table[] = {
        {"", 0, 0},    {"n", -9, 0},  {"u", -6, 0},  {"m", -3, 0},  {"k", 3, 0},   {"M", 6, 0},
        {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},  {"Ki", 0, 10}, {"Mi", 0, 20},
        {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50}, {"Ei", 0, 60},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(suffix, table[i].name) == 0) {
            q->exp10 = table[i].exp10;
            q->exp2 = table[i].exp2;
            return 0;
        }
    if ((suffix[0] == 'e' || suffix[0] == 'E') && suffix[1])
        return s_parse_exponent(text, suffix + 1, &q->exp10, err);
    return vmlet_err_set(err, "quantity '%s': unknown suffix '%s' (use " SUFFIXES ")", text,
                         suffix);
}

// Splits text the way resource.Quantity's scanner does: [+-] digits [. digits]
// then a suffix of letters, an optional sign and digits. Unlike that scanner,
// a quantity must have at least one digit before its suffix: Kubernetes'
// grammar requires one, though ParseQuantity lets "m" or "." through as 0.
static int s_split(const char *text, parts_t *q, vmlet_err_t *err)
{
    const char *p = text;
    if (!*p)
        return vmlet_err_set(err, "quantity '': empty (e.g. 500m, 1.5, 128Mi)");
    if (*p == '+' || *p == '-')
        q->negative = *p++ == '-';
    q->int_digits = p;
    while (s_is_digit(*p))
        p++;
    q->int_len = (size_t)(p - q->int_digits);
    q->frac_digits = p;
    if (*p == '.') {
        q->frac_digits = ++p;
        while (s_is_digit(*p))
            p++;
    }
    q->frac_len = (size_t)(p - q->frac_digits);
    if (q->int_len + q->frac_len == 0)
        return vmlet_err_set(err, "quantity '%s': no number (e.g. 500m, 1.5, 128Mi)", text);
    const char *suffix = p;
    while (s_is_suffix_letter(*p))
        p++;
    if (*p == '+' || *p == '-')
        p++;
    while (s_is_digit(*p))
        p++;
    if (*p)
        return vmlet_err_set(err,
                             "quantity '%s': unexpected '%c' at offset %zu (a number, then "
                             "optionally " SUFFIXES ")",
                             text, *p, (size_t)(p - text));
    return s_interpret_suffix(text, suffix, q, err);
}

// Multiplies little-endian decimal digits by 2^exp2 (a multiple of 10) in
// place; returns the new length. The buffer must have 19 digits to spare.
static size_t s_times_pow2(unsigned char *d, size_t len, int exp2)
{
    for (int k = 0; k < exp2; k += 10) {
        unsigned carry = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned v = d[i] * 1024u + carry;
            d[i] = (unsigned char)(v % 10);
            carry = v / 10;
        }
        for (; carry; carry /= 10)
            d[len++] = (unsigned char)(carry % 10);
    }
    return len;
}

// ceil(|quantity| * 10^scale) away from zero, exactly: the significant digits
// are multiplied by 2^exp2 in decimal, then cut at the scaled decimal point.
// Returns 0, or -1 when the result is larger than INT64_MAX.
static int s_scaled_magnitude(const parts_t *q, int scale, uint64_t *out)
{
    size_t n = q->int_len + q->frac_len;
    cleanup_free unsigned char *d = malloc(n + 20); // 2^60 adds at most 19 digits
    if (!d)
        return -2;
    // Little-endian decimal digits, leading and trailing zeros dropped.
    size_t len = 0;
    int64_t exp10 = q->exp10 - (int64_t)q->frac_len + scale;
    bool seen_nonzero = false;
    for (size_t i = n; i-- > 0;) {
        char c = i < q->int_len ? q->int_digits[i] : q->frac_digits[i - q->int_len];
        if (!seen_nonzero && c == '0') {
            exp10++;
            continue;
        }
        seen_nonzero = true;
        d[len++] = (unsigned char)(c - '0');
    }
    while (len > 0 && d[len - 1] == 0)
        len--;
    if (len == 0) {
        *out = 0;
        return 0;
    }
    len = s_times_pow2(d, len, q->exp2);
    // Digits below the point, if any, round the magnitude up by one.
    size_t cut = 0;
    bool fraction = false;
    if (exp10 < 0) {
        cut = (uint64_t)-exp10 < len ? (size_t)-exp10 : len;
        for (size_t i = 0; i < cut; i++)
            fraction |= d[i] != 0;
        exp10 = 0;
    }
    if ((len - cut) + (uint64_t)exp10 > 19 && len > cut)
        return -1;
    uint64_t v = 0;
    for (size_t i = len; i-- > cut;)
        v = v * 10 + d[i];
    for (int64_t i = 0; i < exp10 && v; i++)
        v *= 10;
    v += fraction;
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = v;
    return 0;
}

static int s_parse_scaled(const char *text, int scale, const char *what, int64_t *out,
                          vmlet_err_t *err)
{
    if (!text)
        text = "";
    parts_t q = {0};
    if (s_split(text, &q, err) < 0)
        return -1;
    uint64_t magnitude;
    int rc = s_scaled_magnitude(&q, scale, &magnitude);
    if (rc == -2)
        return vmlet_err_set(err, "quantity '%s': out of memory", text);
    if (rc < 0)
        return vmlet_err_set(
            err, "quantity '%s': too large (%s must fit in a signed 64-bit integer)", text, what);
    *out = q.negative ? -(int64_t)magnitude : (int64_t)magnitude;
    return 0;
}

int vmlet_quantity_milli(const char *text, int64_t *out, vmlet_err_t *err)
{
    return s_parse_scaled(text, 3, "its value in thousandths", out, err);
}

int vmlet_quantity_value(const char *text, int64_t *out, vmlet_err_t *err)
{
    return s_parse_scaled(text, 0, "its value", out, err);
}

char *vmlet_quantity_format_milli(int64_t millis, char *buf, size_t cap)
{
    if (millis % 1000 == 0)
        snprintf(buf, cap, "%" PRId64, millis / 1000);
    else
        snprintf(buf, cap, "%" PRId64 "m", millis);
    return buf;
}

char *vmlet_quantity_format_bytes(int64_t bytes, char *buf, size_t cap)
{
    if (bytes != 0 && bytes % 1024 == 0)
        snprintf(buf, cap, "%" PRId64 "Ki", bytes / 1024);
    else
        snprintf(buf, cap, "%" PRId64, bytes);
    return buf;
}
