/* SPDX-License-Identifier: BSD-3-Clause */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <gio/gio.h>

#include "jsonrpc.h"
#include "unit.h"
#include "uuid.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Fails the current test unless @error is @domain/@code with @needle in its
 * message; prints what came instead. */
static void check_error(const char *what, const GError *error, GQuark domain, gint code,
                        const char *needle)
{
        if (!error) {
                fprintf(stderr, "\n  %s: no error\n", what);
                CU_FAIL("error expected");
                return;
        }
        if (error->domain != domain || error->code != code || !strstr(error->message, needle)) {
                fprintf(stderr, "\n  %s: got %s %d \"%s\"\n", what,
                        g_quark_to_string(error->domain), error->code, error->message);
                CU_FAIL("wrong error");
        }
}

static gchar *node_text(JsonNode *node)
{
        return node ? json_to_string(node, FALSE) : NULL;
}

static gboolean str_eq0(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static VrotJsonrpcRequest *parse_ok(const char *line)
{
        VrotJsonrpcRequest *req = NULL;
        g_autoptr(GError) error = NULL;

        if (!vrot_jsonrpc_parse_request(line, strlen(line), &req, &error))
                fprintf(stderr, "\n  %s: %s\n", line, error->message);
        CU_ASSERT_PTR_NOT_NULL(req);
        return req;
}

/* ---- Requests ---- */

typedef struct ValidCase {
        const char *line;
        const char *method;
        const char *id;         /* JSON text, NULL for a notification */
        const char *params;     /* JSON text, NULL when absent */
} ValidCase;

static void test_jsonrpc_parse_request_valid(void)
{
        static const ValidCase cases[] = {
                { "{\"jsonrpc\":\"2.0\",\"method\":\"list\",\"id\":1}", "list", "1", NULL },
                { " {\"id\":\"a-1\", \"method\":\"vtpm.create\",\"jsonrpc\":\"2.0\"}\r\n",
                  "vtpm.create", "\"a-1\"", NULL },
                { "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}", "ping", NULL, NULL },
                { "{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":null}", "x", "null", NULL },
                { "{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":-9223372036854775808}", "x",
                  "-9223372036854775808", NULL },
                { "{\"jsonrpc\":\"2.0\",\"method\":\"A_b-9.z\",\"id\":0,\"params\":{}}", "A_b-9.z",
                  "0", "{}" },
                { "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":2,\"params\":{\"a\":[1,-0.5e3,"
                  "true,false,null,\"\\u00e9\\ud83d\\ude00\\n\"],\"b\":{\"c\":{}}}}", "m", "2",
                  "{\"a\":[1,-500.0,true,false,null,\"\u00e9\U0001F600\\n\"],\"b\":{\"c\":{}}}" },
        };

        for (size_t i = 0; i < N(cases); i++) {
                g_autoptr(VrotJsonrpcRequest) req = parse_ok(cases[i].line);
                g_autofree gchar *id = NULL, *params = NULL;
                g_autoptr(JsonNode) pnode = NULL;

                if (!req)
                        continue;
                CU_ASSERT_STRING_EQUAL(vrot_jsonrpc_request_get_method(req), cases[i].method);
                id = node_text(vrot_jsonrpc_request_get_id(req));
                CU_ASSERT(str_eq0(id, cases[i].id));
                CU_ASSERT_EQUAL(vrot_jsonrpc_request_is_notification(req), cases[i].id == NULL);
                if (vrot_jsonrpc_request_get_params(req)) {
                        pnode = json_node_init_object(json_node_alloc(),
                                                      vrot_jsonrpc_request_get_params(req));
                        params = node_text(pnode);
                }
                if (!str_eq0(params, cases[i].params))
                        fprintf(stderr, "\n  params: %s\n", params ? params : "(none)");
                CU_ASSERT(str_eq0(params, cases[i].params));
        }
}

typedef struct InvalidCase {
        const char *what;
        const char *line;
        gsize len;              /* 0: strlen(line) */
        gint code;
        const char *needle;
        const char *id;         /* the id the error carries (JSON), or NULL */
} InvalidCase;

#define REQ(rest) "{\"jsonrpc\":\"2.0\"," rest "}"

static const InvalidCase invalid_cases[] = {
        { "empty", "", 0, VROT_JSONRPC_ERROR_PARSE, "empty line", NULL },
        { "blank", " \t ", 0, VROT_JSONRPC_ERROR_PARSE, "empty line", NULL },
        { "NUL byte", REQ("\"method\":\"a\",\"id\":1") "\0", sizeof(REQ("\"method\":\"a\",\"id\":1")),
          VROT_JSONRPC_ERROR_PARSE, "NUL byte", NULL },
        { "invalid UTF-8", REQ("\"method\":\"\xff\",\"id\":1"), 0, VROT_JSONRPC_ERROR_PARSE,
          "invalid UTF-8", NULL },
        { "overlong UTF-8", REQ("\"method\":\"\xc0\xaf\",\"id\":1"), 0, VROT_JSONRPC_ERROR_PARSE,
          "invalid UTF-8", NULL },
        { "not JSON", "hello", 0, VROT_JSONRPC_ERROR_PARSE, "value expected", NULL },
        { "truncated", "{\"jsonrpc\":\"2.0\"", 0, VROT_JSONRPC_ERROR_PARSE, "end of line", NULL },
        { "comment", "/* c */" REQ("\"method\":\"a\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "value expected", NULL },
        { "single quotes", "{'jsonrpc':'2.0','method':'a'}", 0, VROT_JSONRPC_ERROR_PARSE,
          "member name", NULL },
        { "assignment", "var x = " REQ("\"method\":\"a\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "value expected", NULL },
        { "bare key", "{jsonrpc:\"2.0\"}", 0, VROT_JSONRPC_ERROR_PARSE, "member name", NULL },
        { "no colon", "{\"jsonrpc\" \"2.0\"}", 0, VROT_JSONRPC_ERROR_PARSE, "':' expected", NULL },
        { "trailing text", REQ("\"method\":\"a\"") " x", 0, VROT_JSONRPC_ERROR_PARSE,
          "trailing characters", NULL },
        { "two objects", REQ("\"method\":\"a\"") REQ("\"method\":\"b\""), 0,
          VROT_JSONRPC_ERROR_PARSE, "trailing characters", NULL },
        { "trailing comma", REQ("\"method\":\"a\","), 0, VROT_JSONRPC_ERROR_PARSE,
          "member name", NULL },
        { "array trailing comma", REQ("\"method\":\"a\",\"params\":{\"x\":[1,]}"), 0,
          VROT_JSONRPC_ERROR_PARSE, "value expected", NULL },
        { "missing comma", REQ("\"method\":\"a\" \"id\":1"), 0, VROT_JSONRPC_ERROR_PARSE,
          "',' or '}' expected", NULL },
        { "array missing comma", REQ("\"method\":\"a\",\"params\":{\"x\":[1 2]}"), 0,
          VROT_JSONRPC_ERROR_PARSE, "',' or ']' expected", NULL },
        { "mismatched bracket", REQ("\"method\":\"a\",\"params\":{\"x\":[1}}"), 0,
          VROT_JSONRPC_ERROR_PARSE, "',' or ']' expected", NULL },
        { "leading zero", REQ("\"method\":\"a\",\"id\":01"), 0, VROT_JSONRPC_ERROR_PARSE,
          "',' or '}' expected", NULL },
        { "bare minus", REQ("\"method\":\"a\",\"id\":-"), 0, VROT_JSONRPC_ERROR_PARSE,
          "digit expected in number", NULL },
        { "dot without digits", REQ("\"method\":\"a\",\"id\":1.}"), 0, VROT_JSONRPC_ERROR_PARSE,
          "digit expected after '.'", NULL },
        { "empty exponent", REQ("\"method\":\"a\",\"id\":1e+"), 0, VROT_JSONRPC_ERROR_PARSE,
          "exponent", NULL },
        { "hex number", REQ("\"method\":\"a\",\"id\":0x10"), 0, VROT_JSONRPC_ERROR_PARSE,
          "',' or '}' expected", NULL },
        { "integer overflow", REQ("\"method\":\"a\",\"id\":9223372036854775808"), 0,
          VROT_JSONRPC_ERROR_PARSE, "64-bit range", NULL },
        { "integer underflow", REQ("\"method\":\"a\",\"id\":-9223372036854775809"), 0,
          VROT_JSONRPC_ERROR_PARSE, "64-bit range", NULL },
        { "infinite number", REQ("\"method\":\"a\",\"params\":{\"x\":1e400}"), 0,
          VROT_JSONRPC_ERROR_PARSE, "number out of range", NULL },
        { "long number", REQ("\"method\":\"a\",\"params\":{\"x\":0.0000000000000000000000000000"
          "0000000000000000000000000000000000000001}"), 0, VROT_JSONRPC_ERROR_PARSE,
          "longer than 64", NULL },
        { "NaN", REQ("\"method\":\"a\",\"params\":{\"x\":NaN}"), 0, VROT_JSONRPC_ERROR_PARSE,
          "value expected", NULL },
        { "True", REQ("\"method\":\"a\",\"params\":{\"x\":True}"), 0, VROT_JSONRPC_ERROR_PARSE,
          "value expected", NULL },
        { "truncated literal", REQ("\"method\":\"a\",\"params\":{\"x\":tru"), 0,
          VROT_JSONRPC_ERROR_PARSE, "value expected", NULL },
        { "unterminated string", "{\"jsonrpc\":\"2.0", 0, VROT_JSONRPC_ERROR_PARSE,
          "unterminated string", NULL },
        { "backslash at end", "{\"jsonrpc\":\"2.0\\", 0, VROT_JSONRPC_ERROR_PARSE,
          "unterminated string", NULL },
        { "invalid escape", REQ("\"method\":\"a\\x\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "invalid escape", NULL },
        { "short \\u", REQ("\"method\":\"a\\u12\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "4 hex digits", NULL },
        { "\\u0000", REQ("\"method\":\"create\\u0000x\",\"id\":1"), 0, VROT_JSONRPC_ERROR_PARSE,
          "\\u0000", NULL },
        { "lone high surrogate", REQ("\"method\":\"a\\ud800\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "surrogate", NULL },
        { "high surrogate, no low", REQ("\"method\":\"a\\ud800\\u0041\""), 0,
          VROT_JSONRPC_ERROR_PARSE, "surrogate", NULL },
        { "lone low surrogate", REQ("\"method\":\"a\\udc00\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "surrogate", NULL },
        { "raw newline in string", REQ("\"method\":\"a\nb\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "control character", NULL },
        { "raw tab in string", REQ("\"method\":\"a\tb\""), 0, VROT_JSONRPC_ERROR_PARSE,
          "control character", NULL },
        { "batch", "[" REQ("\"method\":\"a\",\"id\":1") "]", 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "batch", NULL },
        { "empty batch", "[]", 0, VROT_JSONRPC_ERROR_INVALID_REQUEST, "batch", NULL },
        { "number", "42", 0, VROT_JSONRPC_ERROR_INVALID_REQUEST, "must be a JSON object", NULL },
        { "string", "\"x\"", 0, VROT_JSONRPC_ERROR_INVALID_REQUEST, "must be a JSON object",
          NULL },
        { "null", "null", 0, VROT_JSONRPC_ERROR_INVALID_REQUEST, "must be a JSON object", NULL },
        { "duplicate method", REQ("\"method\":\"list\",\"method\":\"delete\",\"id\":1"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "duplicate member name 'method'", NULL },
        { "duplicate by escape", REQ("\"method\":\"a\",\"p\\u0061rams\":{},\"params\":{}"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "duplicate member name 'params'", NULL },
        { "duplicate in params", REQ("\"method\":\"a\",\"params\":{\"x\":{\"y\":1,\"y\":2}}"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "duplicate member name 'y'", NULL },
        { "no jsonrpc", "{\"method\":\"a\",\"id\":1}", 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "missing 'jsonrpc'", "1" },
        { "jsonrpc 1.0", "{\"jsonrpc\":\"1.0\",\"method\":\"a\",\"id\":1}", 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "'jsonrpc' must be \"2.0\"", "1" },
        { "jsonrpc number", "{\"jsonrpc\":2.0,\"method\":\"a\",\"id\":\"s\"}", 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "'jsonrpc' must be \"2.0\"", "\"s\"" },
        { "no method", REQ("\"id\":\"abc\""), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "missing 'method'", "\"abc\"" },
        { "method number", REQ("\"method\":1,\"id\":3"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'method' must be a string", "3" },
        { "method null", REQ("\"method\":null,\"id\":null"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "'method' must be a string", "null" },
        { "method empty", REQ("\"method\":\"\",\"id\":3"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "must not be empty", "3" },
        { "method too long", REQ("\"method\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaa\",\"id\":3"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "longer than 64", "3" },
        { "method with space", REQ("\"method\":\"vtpm create\",\"id\":3"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "may contain only", "3" },
        { "method with escape", REQ("\"method\":\"a\\nb\",\"id\":3"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "may contain only", "3" },
        { "id fraction", REQ("\"method\":\"a\",\"id\":1.5"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'id' must be", NULL },
        { "id 1.0", REQ("\"method\":\"a\",\"id\":1.0"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'id' must be", NULL },
        { "id boolean", REQ("\"method\":\"a\",\"id\":true"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'id' must be", NULL },
        { "id object", REQ("\"method\":\"a\",\"id\":{}"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'id' must be", NULL },
        { "id array", REQ("\"method\":\"a\",\"id\":[1]"), 0, VROT_JSONRPC_ERROR_INVALID_REQUEST,
          "'id' must be", NULL },
        { "params array", REQ("\"method\":\"a\",\"id\":7,\"params\":[1,2]"), 0,
          VROT_JSONRPC_ERROR_INVALID_PARAMS, "by-position", "7" },
        { "params string", REQ("\"method\":\"a\",\"id\":7,\"params\":\"x\""), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "'params' must be an object", "7" },
        { "params null", REQ("\"method\":\"a\",\"id\":7,\"params\":null"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "'params' must be an object", "7" },
        { "unknown member", REQ("\"method\":\"a\",\"id\":7,\"param\":{}"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "unknown member 'param'", "7" },
        { "unknown member, escaped", REQ("\"method\":\"a\",\"id\":7,\"a\\nb\":{}"), 0,
          VROT_JSONRPC_ERROR_INVALID_REQUEST, "unknown member 'a\\nb'", "7" },
};

static void test_jsonrpc_parse_request_invalid(void)
{
        for (size_t i = 0; i < N(invalid_cases); i++) {
                const InvalidCase *c = &invalid_cases[i];
                VrotJsonrpcRequest *req = (VrotJsonrpcRequest *)&req;   /* sentinel */
                g_autoptr(GError) error = NULL;
                g_autofree gchar *id = NULL;
                gsize len = c->len ? c->len : strlen(c->line);

                CU_ASSERT_FALSE(vrot_jsonrpc_parse_request(c->line, len, &req, &error));
                CU_ASSERT(req == (VrotJsonrpcRequest *)&req);
                check_error(c->what, error, VROT_JSONRPC_ERROR, c->code, c->needle);
                id = node_text(vrot_jsonrpc_error_get_id(error));
                if (!str_eq0(id, c->id)) {
                        fprintf(stderr, "\n  %s: id %s\n", c->what, id ? id : "(none)");
                        CU_FAIL("wrong id in error");
                }
        }
}

/* A valid request padded with spaces to exactly @len bytes. */
static GString *padded_request(gsize len)
{
        GString *s = g_string_new(REQ("\"method\":\"a\",\"id\":1"));

        while (s->len < len)
                g_string_append_c(s, ' ');
        return s;
}

static void test_jsonrpc_parse_request_too_large(void)
{
        g_autoptr(GString) max = padded_request(VROT_JSONRPC_MAX_LINE);
        g_autoptr(GString) over = padded_request(VROT_JSONRPC_MAX_LINE + 1);
        g_autoptr(VrotJsonrpcRequest) req = NULL;
        g_autoptr(GError) error = NULL;

        CU_ASSERT_TRUE(vrot_jsonrpc_parse_request(max->str, max->len, &req, NULL));
        CU_ASSERT_FALSE(vrot_jsonrpc_parse_request(over->str, over->len, &req, &error));
        check_error("too large", error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_TOO_LARGE,
                    "request too large");
}

/* A request nested @depth levels deep, the request object being level 1:
 * {"jsonrpc":..,"params":{"x":[[..[0]..]]}} or {"x":{"k":{"k":..0..}}}. */
static GString *nested_request(guint depth, gboolean objects)
{
        GString *s = g_string_new("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":1,"
                                  "\"params\":{\"x\":");

        for (guint i = 2; i < depth; i++)
                g_string_append(s, objects ? "{\"k\":" : "[");
        g_string_append_c(s, '0');
        for (guint i = 2; i < depth; i++)
                g_string_append_c(s, objects ? '}' : ']');
        g_string_append(s, "}}");
        return s;
}

static void test_jsonrpc_parse_request_depth(void)
{
        for (int objects = 0; objects <= 1; objects++) {
                g_autoptr(GString) ok = nested_request(VROT_JSONRPC_MAX_DEPTH, objects);
                g_autoptr(GString) deep = nested_request(VROT_JSONRPC_MAX_DEPTH + 1, objects);
                g_autoptr(VrotJsonrpcRequest) req = NULL;
                g_autoptr(GError) error = NULL;

                if (!vrot_jsonrpc_parse_request(ok->str, ok->len, &req, &error))
                        fprintf(stderr, "\n  %s: %s\n", ok->str, error->message);
                CU_ASSERT_PTR_NOT_NULL(req);
                g_clear_error(&error);
                CU_ASSERT_FALSE(vrot_jsonrpc_parse_request(deep->str, deep->len, &req, &error));
                check_error("one level too deep", error, VROT_JSONRPC_ERROR,
                            VROT_JSONRPC_ERROR_INVALID_REQUEST, "nesting deeper than 64");
        }
}

/* A line of nothing but '[' (or '{"a":'): no recursion, no crash. */
static void test_jsonrpc_parse_request_depth_bomb(void)
{
        static const char *const units[] = { "[", "{\"a\":", "[{\"a\":" };

        for (size_t i = 0; i < N(units); i++) {
                g_autoptr(GString) s = g_string_new(NULL);
                g_autoptr(VrotJsonrpcRequest) req = NULL;
                g_autoptr(GError) error = NULL;

                while (s->len + strlen(units[i]) <= VROT_JSONRPC_MAX_LINE)
                        g_string_append(s, units[i]);
                CU_ASSERT_FALSE(vrot_jsonrpc_parse_request(s->str, s->len, &req, &error));
                check_error(units[i], error, VROT_JSONRPC_ERROR,
                            VROT_JSONRPC_ERROR_INVALID_REQUEST, "nesting deeper");
        }
}

/* ---- Typed parameters ---- */

typedef enum Kind { STRING, UUID, UINT, BOOL, ENUM, BASE64 } Kind;

typedef struct ParamCase {
        const char *what;
        const char *params;     /* the params object */
        Kind kind;
        VrotJsonrpcPresence presence;
        gboolean ok;
        const char *needle;     /* error message, or the value read as text */
} ParamCase;

static const ParamCase param_cases[] = {
        { "string", "{\"p\":\"abcd\"}", STRING, VROT_JSONRPC_REQUIRED, TRUE, "abcd" },
        { "string, empty", "{\"p\":\"\"}", STRING, VROT_JSONRPC_REQUIRED, TRUE, "" },
        { "string, too long", "{\"p\":\"abcde\"}", STRING, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' is longer than 4 bytes" },
        { "string, number", "{\"p\":1}", STRING, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be a string" },
        { "string, null", "{\"p\":null}", STRING, VROT_JSONRPC_OPTIONAL, FALSE,
          "parameter 'p' must be a string" },
        { "string, object", "{\"p\":{}}", STRING, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be a string" },
        { "string, missing", "{\"q\":\"x\"}", STRING, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "string, optional", "{}", STRING, VROT_JSONRPC_OPTIONAL, TRUE, "default" },
        { "uuid", "{\"p\":\"6F1C2C1E-7d3a-4a53-9d64-0c1d2e3f4a5b\"}", UUID, VROT_JSONRPC_REQUIRED,
          TRUE, "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b" },
        { "uuid, short", "{\"p\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5\"}", UUID,
          VROT_JSONRPC_REQUIRED, FALSE, "parameter 'p' must be a UUID" },
        { "uuid, no dashes", "{\"p\":\"6f1c2c1e7d3a4a539d640c1d2e3f4a5b\"}", UUID,
          VROT_JSONRPC_REQUIRED, FALSE, "parameter 'p' must be a UUID" },
        { "uuid, braces", "{\"p\":\"{6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5}\"}", UUID,
          VROT_JSONRPC_REQUIRED, FALSE, "parameter 'p' must be a UUID" },
        { "uuid, number", "{\"p\":5}", UUID, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be a UUID string" },
        { "uuid, missing", "{}", UUID, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "uuid, optional", "{}", UUID, VROT_JSONRPC_OPTIONAL, TRUE,
          "00000000-0000-0000-0000-000000000000" },
        { "uint", "{\"p\":7}", UINT, VROT_JSONRPC_REQUIRED, TRUE, "7" },
        { "uint, min", "{\"p\":2}", UINT, VROT_JSONRPC_REQUIRED, TRUE, "2" },
        { "uint, max", "{\"p\":10}", UINT, VROT_JSONRPC_REQUIRED, TRUE, "10" },
        { "uint, below", "{\"p\":1}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer from 2 to 10" },
        { "uint, above", "{\"p\":11}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer from 2 to 10" },
        { "uint, negative", "{\"p\":-3}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer from 2 to 10" },
        { "uint, huge", "{\"p\":9223372036854775807}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer from 2 to 10" },
        { "uint, float", "{\"p\":5.0}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer" },
        { "uint, string", "{\"p\":\"5\"}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer" },
        { "uint, bool", "{\"p\":true}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be an integer" },
        { "uint, missing", "{}", UINT, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "uint, optional", "{}", UINT, VROT_JSONRPC_OPTIONAL, TRUE, "42" },
        { "bool true", "{\"p\":true}", BOOL, VROT_JSONRPC_REQUIRED, TRUE, "1" },
        { "bool false", "{\"p\":false}", BOOL, VROT_JSONRPC_REQUIRED, TRUE, "0" },
        { "bool, number", "{\"p\":1}", BOOL, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be true or false" },
        { "bool, string", "{\"p\":\"true\"}", BOOL, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be true or false" },
        { "bool, missing", "{}", BOOL, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "bool, optional", "{}", BOOL, VROT_JSONRPC_OPTIONAL, TRUE, "1" },
        { "enum first", "{\"p\":\"rsa\"}", ENUM, VROT_JSONRPC_REQUIRED, TRUE, "0" },
        { "enum last", "{\"p\":\"both\"}", ENUM, VROT_JSONRPC_REQUIRED, TRUE, "2" },
        { "enum, other", "{\"p\":\"RSA\"}", ENUM, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be one of: rsa, ecc, both" },
        { "enum, number", "{\"p\":0}", ENUM, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be one of: rsa, ecc, both" },
        { "enum, missing", "{}", ENUM, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "enum, optional", "{}", ENUM, VROT_JSONRPC_OPTIONAL, TRUE, "99" },
        /* base64 of 2 to 4 bytes, read back as hex */
        { "base64", "{\"p\":\"AQID\"}", BASE64, VROT_JSONRPC_REQUIRED, TRUE, "010203" },
        { "base64, padded", "{\"p\":\"AQI=\"}", BASE64, VROT_JSONRPC_REQUIRED, TRUE, "0102" },
        { "base64, max", "{\"p\":\"/////w==\"}", BASE64, VROT_JSONRPC_REQUIRED, TRUE, "ffffffff" },
        { "base64, too short", "{\"p\":\"AQ==\"}", BASE64, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must hold 2 to 4 bytes, not 1" },
        { "base64, too long", "{\"p\":\"AQIDBAU=\"}", BASE64, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' base64 of more than 4 bytes" },
        { "base64, not base64", "{\"p\":\"AQ-D\"}", BASE64, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' not canonical base64" },
        { "base64, number", "{\"p\":12}", BASE64, VROT_JSONRPC_REQUIRED, FALSE,
          "parameter 'p' must be a base64 string" },
        { "base64, missing", "{}", BASE64, VROT_JSONRPC_REQUIRED, FALSE,
          "missing required parameter 'p'" },
        { "base64, optional", "{}", BASE64, VROT_JSONRPC_OPTIONAL, TRUE, "(none)" },
};

static gboolean read_base64(const VrotJsonrpcRequest *req, const ParamCase *c, gchar **ret,
                            GError **error)
{
        g_autoptr(GBytes) b = NULL;
        g_autoptr(GString) hex = g_string_new(NULL);
        gsize len = 0;
        const guint8 *p;

        if (!vrot_jsonrpc_param_base64(req, "p", c->presence, 2, 4, &b, error))
                return FALSE;
        if (!b) {
                *ret = g_strdup("(none)");
                return TRUE;
        }
        p = g_bytes_get_data(b, &len);
        for (gsize i = 0; i < len; i++)
                g_string_append_printf(hex, "%02x", p[i]);
        *ret = g_string_free(g_steal_pointer(&hex), FALSE);
        return TRUE;
}

/* Reads parameter "p" as @kind; on success returns the value as text. */
static gboolean read_param(const VrotJsonrpcRequest *req, const ParamCase *c, gchar **ret,
                           GError **error)
{
        static const char *const algs[] = { "rsa", "ecc", "both", NULL };
        const char *s = "default";
        guint8 uuid[16] = { 0 };
        guint64 u = 42;
        gboolean b = TRUE;
        guint e = 99;
        char text[VROT_UUID_STR_LEN + 1];

        switch (c->kind) {
        case STRING:
                if (!vrot_jsonrpc_param_string(req, "p", c->presence, 4, &s, error))
                        return FALSE;
                *ret = g_strdup(s);
                return TRUE;
        case UUID:
                if (!vrot_jsonrpc_param_uuid(req, "p", c->presence, uuid, error))
                        return FALSE;
                vrot_uuid_format(uuid, text);
                *ret = g_strdup(text);
                return TRUE;
        case UINT:
                if (!vrot_jsonrpc_param_uint(req, "p", c->presence, 2, 10, &u, error))
                        return FALSE;
                *ret = g_strdup_printf("%" G_GUINT64_FORMAT, u);
                return TRUE;
        case BOOL:
                if (!vrot_jsonrpc_param_bool(req, "p", c->presence, &b, error))
                        return FALSE;
                *ret = g_strdup_printf("%d", b);
                return TRUE;
        case ENUM:
                if (!vrot_jsonrpc_param_enum(req, "p", c->presence, algs, &e, error))
                        return FALSE;
                *ret = g_strdup_printf("%u", e);
                return TRUE;
        case BASE64:
                return read_base64(req, c, ret, error);
        }
        return FALSE;
}

static void test_jsonrpc_param_table(void)
{
        for (size_t i = 0; i < N(param_cases); i++) {
                const ParamCase *c = &param_cases[i];
                g_autofree gchar *line = g_strdup_printf(REQ("\"method\":\"m\",\"id\":1,"
                                                             "\"params\":%s"), c->params);
                g_autoptr(VrotJsonrpcRequest) req = parse_ok(line);
                g_autoptr(GError) error = NULL;
                g_autofree gchar *value = NULL;
                gboolean ok;

                if (!req)
                        continue;
                ok = read_param(req, c, &value, &error);
                if (!c->ok) {
                        CU_ASSERT_FALSE(ok);
                        check_error(c->what, error, VROT_JSONRPC_ERROR,
                                    VROT_JSONRPC_ERROR_INVALID_PARAMS, c->needle);
                } else if (!ok || strcmp(value, c->needle) != 0) {
                        fprintf(stderr, "\n  %s: %s\n", c->what, ok ? value : error->message);
                        CU_FAIL("parameter not read");
                }
        }
}

/* Without "params" at all, optional parameters read as absent. */
static void test_jsonrpc_param_no_params(void)
{
        g_autoptr(VrotJsonrpcRequest) req = parse_ok(REQ("\"method\":\"m\",\"id\":1"));
        static const char *const known[] = { "a", NULL };
        g_autoptr(GError) error = NULL;
        const char *s = "default";

        CU_ASSERT_PTR_NULL(vrot_jsonrpc_request_get_params(req));
        CU_ASSERT_FALSE(vrot_jsonrpc_param_has(req, "a"));
        CU_ASSERT_TRUE(vrot_jsonrpc_params_check_known(req, known, NULL));
        CU_ASSERT_TRUE(vrot_jsonrpc_param_string(req, "a", VROT_JSONRPC_OPTIONAL, 10, &s, NULL));
        CU_ASSERT_STRING_EQUAL(s, "default");
        CU_ASSERT_FALSE(vrot_jsonrpc_param_string(req, "a", VROT_JSONRPC_REQUIRED, 10, &s,
                                                  &error));
        check_error("required", error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                    "missing required parameter 'a'");
}

typedef struct KnownCase {
        const char *params;
        const char *needle;     /* NULL: accepted */
} KnownCase;

static void test_jsonrpc_params_check_known(void)
{
        static const char *const known[] = { "uuid", "name", NULL };
        static const KnownCase cases[] = {
                { "{}", NULL },
                { "{\"uuid\":1}", NULL },
                { "{\"name\":1,\"uuid\":2}", NULL },
                { "{\"uuidd\":1}", "unknown parameter 'uuidd' for method 'm'" },
                { "{\"uuid\":1,\"Name\":2}", "unknown parameter 'Name'" },
                { "{\"\":1}", "unknown parameter ''" },
                { "{\"a\\u0007\\u00e9\":1}", "unknown parameter 'a\\007\\303\\251'" },
                { "{\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":1}",
                  "unknown parameter 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxx...'" },
        };

        for (size_t i = 0; i < N(cases); i++) {
                g_autofree gchar *line = g_strdup_printf(REQ("\"method\":\"m\",\"id\":1,"
                                                             "\"params\":%s"), cases[i].params);
                g_autoptr(VrotJsonrpcRequest) req = parse_ok(line);
                g_autoptr(GError) error = NULL;
                gboolean ok;

                if (!req)
                        continue;
                ok = vrot_jsonrpc_params_check_known(req, known, &error);
                CU_ASSERT_EQUAL(ok, cases[i].needle == NULL);
                if (cases[i].needle)
                        check_error(cases[i].params, error, VROT_JSONRPC_ERROR,
                                    VROT_JSONRPC_ERROR_INVALID_PARAMS, cases[i].needle);
        }
}

static void test_jsonrpc_param_has(void)
{
        g_autoptr(VrotJsonrpcRequest) req =
                parse_ok(REQ("\"method\":\"m\",\"params\":{\"a\":null,\"b\":0}"));

        CU_ASSERT_TRUE(vrot_jsonrpc_param_has(req, "a"));
        CU_ASSERT_TRUE(vrot_jsonrpc_param_has(req, "b"));
        CU_ASSERT_FALSE(vrot_jsonrpc_param_has(req, "c"));
        CU_ASSERT_TRUE(vrot_jsonrpc_request_is_notification(req));
}

typedef struct Base64Case {
        const char *text;
        const char *bytes;      /* NULL: refused */
        gsize len;
} Base64Case;

/* RFC 4648 section 10 vectors, and what a lenient decoder would let through. */
static void test_jsonrpc_base64_decode(void)
{
        static const Base64Case cases[] = {
                { "", "", 0 },
                { "Zg==", "f", 1 },
                { "Zm8=", "fo", 2 },
                { "Zm9v", "foo", 3 },
                { "Zm9vYg==", "foob", 4 },
                { "Zm9vYmE=", "fooba", 5 },
                { "Zm9vYmFy", "foobar", 6 },
                { "AP8A", "\x00\xff\x00", 3 },
                { "Zg", NULL, 0 },              /* unpadded */
                { "Zg=", NULL, 0 },
                { "Zh==", NULL, 0 },            /* non-zero bits before padding */
                { "Zm9=", NULL, 0 },
                { "Zm9v\n", NULL, 0 },          /* a line break */
                { "Zm 9", NULL, 0 },            /* white space */
                { "Zm9v====", NULL, 0 },
                { "Z===", NULL, 0 },
                { "=Zg=", NULL, 0 },
                { "Zg==Zg==", NULL, 0 },        /* padding inside */
                { "Zm9-", NULL, 0 },            /* base64url */
                { "Zm9_", NULL, 0 },
                { "Zm9vYmFyYg==", NULL, 0 },    /* 7 bytes: over the limit of 6 */
        };

        for (size_t i = 0; i < N(cases); i++) {
                g_autoptr(GBytes) b = NULL;
                g_autoptr(GError) error = NULL;
                gboolean ok = vrot_jsonrpc_base64_decode(cases[i].text, strlen(cases[i].text), 6,
                                                         &b, &error);

                if (ok != (cases[i].bytes != NULL))
                        fprintf(stderr, "\n  '%s': %s\n", cases[i].text,
                                ok ? "accepted" : error->message);
                CU_ASSERT_EQUAL(ok, cases[i].bytes != NULL);
                if (!ok) {
                        CU_ASSERT_PTR_NULL(b);
                        CU_ASSERT(error && error->code == VROT_JSONRPC_ERROR_INVALID_PARAMS);
                        continue;
                }
                /* An empty GBytes has no data pointer: memcmp() may not see it. */
                CU_ASSERT(g_bytes_get_size(b) == cases[i].len &&
                          (cases[i].len == 0 ||
                           memcmp(g_bytes_get_data(b, NULL), cases[i].bytes, cases[i].len) == 0));
        }
}

/* Every byte string survives g_base64_encode() and back. */
static void test_jsonrpc_base64_round_trip(void)
{
        guint8 buf[64];

        for (gsize len = 0; len <= sizeof(buf); len++) {
                g_autofree gchar *text = NULL;
                g_autoptr(GBytes) b = NULL;

                for (gsize i = 0; i < len; i++)
                        buf[i] = (guint8)(i * 37 + len);
                text = g_base64_encode(buf, len);
                CU_ASSERT_TRUE_FATAL(vrot_jsonrpc_base64_decode(text, strlen(text), 64, &b, NULL));
                CU_ASSERT(g_bytes_get_size(b) == len &&
                          (len == 0 || memcmp(g_bytes_get_data(b, NULL), buf, len) == 0));
        }
}

/* ---- Building lines ---- */

static JsonNode *json(const char *text)
{
        g_autoptr(JsonParser) p = json_parser_new();

        CU_ASSERT_FATAL(json_parser_load_from_data(p, text, -1, NULL));
        return json_parser_steal_root(p);
}

typedef struct BuildCase {
        const char *what;
        gchar *(*build)(void);
        const char *want;
} BuildCase;

static gchar *build_result_int_id(void)
{
        g_autoptr(JsonNode) id = json("1");
        g_autoptr(JsonNode) result = json("{\"a\":[1,\"x\\ny\",null]}");

        return vrot_jsonrpc_build_result(id, result);
}

static gchar *build_result_null(void)
{
        g_autoptr(JsonNode) id = json("\"s\"");

        return vrot_jsonrpc_build_result(id, NULL);
}

static gchar *build_error_plain(void)
{
        return vrot_jsonrpc_build_error(NULL, VROT_JSONRPC_ERROR_NOT_FOUND, "no such instance",
                                        NULL);
}

static gchar *build_error_data(void)
{
        g_autoptr(JsonNode) id = json("7");
        g_autoptr(JsonNode) data = json("{\"uuid\":\"u\"}");

        return vrot_jsonrpc_build_error(id, VROT_JSONRPC_ERROR_STATE_REFUSED,
                                        "state refused:\n\"rolled back\"\t\xff", data);
}

static gchar *build_error_from_ours(void)
{
        g_autoptr(GError) e = g_error_new(VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_BUSY, "busy %d", 3);
        g_autoptr(JsonNode) id = json("5");
        g_autoptr(JsonNode) data = json("[1]");

        vrot_jsonrpc_error_set_data(e, data);
        return vrot_jsonrpc_build_error_from_gerror(id, e);
}

static gchar *build_error_from_other(void)
{
        g_autoptr(GError) e = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_FAILED, "disk on fire");

        return vrot_jsonrpc_build_error_from_gerror(NULL, e);
}

static gchar *build_error_from_parse(void)
{
        static const char line[] = REQ("\"method\":\"a b\",\"id\":\"q\"");
        g_autoptr(GError) e = NULL;
        VrotJsonrpcRequest *req = NULL;

        CU_ASSERT_FALSE(vrot_jsonrpc_parse_request(line, strlen(line), &req, &e));
        return vrot_jsonrpc_build_error_from_gerror(NULL, e);
}

/* Values json-glib's generator gets wrong, and strings to escape. */
static gchar *build_result_awkward(void)
{
        static const gdouble doubles[] = { 1e20, -0.0, 0.5, 3.0, 1e-300 };
        g_autoptr(JsonArray) a = json_array_new();
        g_autoptr(JsonNode) result = json_node_new(JSON_NODE_ARRAY);

        for (size_t i = 0; i < N(doubles); i++)
                json_array_add_double_element(a, doubles[i]);
        json_array_add_double_element(a, INFINITY);
        json_array_add_double_element(a, NAN);
        json_array_add_int_element(a, G_MININT64);
        json_array_add_string_element(a, "\x01\x1f\x7f\b\f\r\\/\xe2\x80\xa8\xc3");
        json_node_set_array(result, a);
        return vrot_jsonrpc_build_result(NULL, result);
}

static gchar *build_request_params(void)
{
        g_autoptr(JsonNode) id = json("3");
        g_autoptr(JsonNode) params = json("{\"uuid\":\"x\",\"n\":2}");

        return vrot_jsonrpc_build_request(id, "create", json_node_get_object(params));
}

static gchar *build_request_notification(void)
{
        return vrot_jsonrpc_build_request(NULL, "ping", NULL);
}

static void test_jsonrpc_build_table(void)
{
        static const BuildCase cases[] = {
                { "result", build_result_int_id,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"a\":[1,\"x\\ny\",null]}}\n" },
                { "awkward values", build_result_awkward,
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":[1e+20,-0.0,0.5,3.0,1e-300,"
                  "null,null,-9223372036854775808,\"\\u0001\\u001f\\u007f\\b\\f\\r\\\\/\xe2\x80\xa8"
                  "\xef\xbf\xbd\"]}\n" },
                { "null result", build_result_null,
                  "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":null}\n" },
                { "error", build_error_plain,
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,"
                  "\"message\":\"no such instance\"}}\n" },
                { "error with data", build_error_data,
                  "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32003,\"message\":"
                  "\"state refused:\\n\\\"rolled back\\\"\\t\xef\xbf\xbd\",\"data\":{\"uuid\":\"u\"}}}\n" },
                { "from our GError", build_error_from_ours,
                  "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-32005,\"message\":"
                  "\"busy 3\",\"data\":[1]}}\n" },
                { "from another GError", build_error_from_other,
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":"
                  "\"disk on fire\"}}\n" },
                { "from a refused request", build_error_from_parse,
                  "{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"error\":{\"code\":-32600,\"message\":"
                  "\"'method' may contain only letters, digits, '.', '_' and '-'\"}}\n" },
                { "request", build_request_params,
                  "{\"jsonrpc\":\"2.0\",\"method\":\"create\",\"params\":{\"uuid\":\"x\",\"n\":2},"
                  "\"id\":3}\n" },
                { "notification", build_request_notification,
                  "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n" },
        };

        for (size_t i = 0; i < N(cases); i++) {
                g_autofree gchar *line = cases[i].build();

                if (!line || strcmp(line, cases[i].want) != 0) {
                        fprintf(stderr, "\n  %s: %s", cases[i].what, line ? line : "(none)\n");
                        CU_FAIL("wrong line");
                }
                /* One line: the only newline is the last byte. */
                CU_ASSERT(line && strchr(line, '\n') == line + strlen(line) - 1);
        }
}

/* build_request -> parse_request, build_result/error -> parse_response. */
static void test_jsonrpc_round_trip(void)
{
        static const char *const ids[] = { "1", "-5", "\"abc\"", "\"\\u00e9\\n\"", "null" };
        g_autoptr(JsonNode) params = json("{\"s\":\"\\u00e9\\\"\\\\\",\"n\":-1,\"o\":{\"a\":[]}}");

        for (size_t i = 0; i < N(ids); i++) {
                g_autoptr(JsonNode) id = json(ids[i]);
                g_autofree gchar *line = vrot_jsonrpc_build_request(id, "vtpm.create",
                                                                    json_node_get_object(params));
                g_autoptr(VrotJsonrpcRequest) req = NULL;
                g_autoptr(JsonNode) result = NULL, back = NULL;
                g_autoptr(GError) error = NULL;
                g_autofree gchar *reply = NULL, *ereply = NULL;

                CU_ASSERT_TRUE_FATAL(vrot_jsonrpc_parse_request(line, strlen(line) - 1, &req, NULL));
                CU_ASSERT_STRING_EQUAL(vrot_jsonrpc_request_get_method(req), "vtpm.create");
                CU_ASSERT(json_node_equal(vrot_jsonrpc_request_get_id(req), id));
                back = json_node_init_object(json_node_alloc(), vrot_jsonrpc_request_get_params(req));
                CU_ASSERT(json_node_equal(back, params));

                reply = vrot_jsonrpc_build_result(vrot_jsonrpc_request_get_id(req), params);
                CU_ASSERT_TRUE(vrot_jsonrpc_parse_response(reply, strlen(reply) - 1, id, &result,
                                                           NULL));
                CU_ASSERT(result && json_node_equal(result, params));

                ereply = vrot_jsonrpc_build_error(id, -32099, "custom \xe2\x9c\x93", params);
                CU_ASSERT_FALSE(vrot_jsonrpc_parse_response(ereply, strlen(ereply) - 1, id,
                                                            &result, &error));
                check_error("error reply", error, VROT_JSONRPC_ERROR, -32099, "custom \xe2\x9c\x93");
                CU_ASSERT(json_node_equal(vrot_jsonrpc_error_get_data(error), params));
        }
}

/* ---- Responses ---- */

typedef struct ResponseCase {
        const char *what;
        const char *line;
        GQuark domain;          /* 0: G_IO_ERROR; 1: VROT_JSONRPC_ERROR */
        gint code;
        const char *needle;
} ResponseCase;

static void test_jsonrpc_parse_response_errors(void)
{
        static const ResponseCase cases[] = {
                { "not JSON", "{", 0, G_IO_ERROR_INVALID_DATA, "end of line" },
                { "NUL", "{}\0", 0, G_IO_ERROR_INVALID_DATA, "NUL byte" },
                { "array", "[]", 0, G_IO_ERROR_INVALID_DATA, "not a JSON object" },
                { "no version", "{\"id\":1,\"result\":1}", 0, G_IO_ERROR_INVALID_DATA,
                  "missing 'jsonrpc'" },
                { "old version", "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":1}", 0,
                  G_IO_ERROR_INVALID_DATA, "must be \"2.0\"" },
                { "no id", "{\"jsonrpc\":\"2.0\",\"result\":1}", 0, G_IO_ERROR_INVALID_DATA,
                  "no 'id'" },
                { "neither", "{\"jsonrpc\":\"2.0\",\"id\":1}", 0, G_IO_ERROR_INVALID_DATA,
                  "exactly one of" },
                { "both", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}", 0,
                  G_IO_ERROR_INVALID_DATA, "exactly one of" },
                { "other id", "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":1}", 0,
                  G_IO_ERROR_INVALID_DATA, "id mismatch" },
                { "id as string", "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":1}", 0,
                  G_IO_ERROR_INVALID_DATA, "id mismatch" },
                { "null id on a result", "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":1}", 0,
                  G_IO_ERROR_INVALID_DATA, "id mismatch" },
                { "other id on an error", "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":"
                  "{\"code\":1,\"message\":\"m\"}}", 0, G_IO_ERROR_INVALID_DATA, "id mismatch" },
                { "error not object", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"bad\"}", 0,
                  G_IO_ERROR_INVALID_DATA, "'error' is not an object" },
                { "error without code", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":"
                  "{\"message\":\"m\"}}", 0, G_IO_ERROR_INVALID_DATA, "integer 'code'" },
                { "fractional code", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":"
                  "{\"code\":1.5,\"message\":\"m\"}}", 0, G_IO_ERROR_INVALID_DATA,
                  "integer 'code'" },
                { "code beyond int", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":"
                  "{\"code\":4294967296,\"message\":\"m\"}}", 0, G_IO_ERROR_INVALID_DATA,
                  "integer 'code'" },
                { "error without message", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":"
                  "{\"code\":1}}", 0, G_IO_ERROR_INVALID_DATA, "string 'message'" },
                { "duplicate result", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"result\":2}", 0,
                  G_IO_ERROR_INVALID_DATA, "duplicate member name 'result'" },
                { "error reply", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32001,"
                  "\"message\":\"no such instance\"}}", 1, VROT_JSONRPC_ERROR_NOT_FOUND,
                  "no such instance" },
                { "error reply, null id", "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
                  "{\"code\":-32700,\"message\":\"parse error at byte 3\"}}", 1,
                  VROT_JSONRPC_ERROR_PARSE, "parse error at byte 3" },
                { "error reply, foreign code", "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":"
                  "{\"code\":17,\"message\":\"\"}}", 1, 17, "" },
        };
        g_autoptr(JsonNode) id = json("1");

        for (size_t i = 0; i < N(cases); i++) {
                const ResponseCase *c = &cases[i];
                JsonNode *result = (JsonNode *)&result;    /* sentinel */
                g_autoptr(GError) error = NULL;
                gsize len = strcmp(c->what, "NUL") == 0 ? 3 : strlen(c->line);

                CU_ASSERT_FALSE(vrot_jsonrpc_parse_response(c->line, len, id, &result, &error));
                CU_ASSERT(result == (JsonNode *)&result);
                check_error(c->what, error, c->domain ? VROT_JSONRPC_ERROR : G_IO_ERROR, c->code,
                            c->needle);
        }
}

static void test_jsonrpc_parse_response_data(void)
{
        static const char line[] = "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":-32003,"
                                   "\"message\":\"refused\",\"data\":{\"generation\":4}}}";
        g_autoptr(JsonNode) id = json("\"x\"");
        g_autoptr(JsonNode) want = json("{\"generation\":4}");
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GError) copy = NULL;

        CU_ASSERT_FALSE(vrot_jsonrpc_parse_response(line, strlen(line), id, &result, &error));
        check_error("data", error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_STATE_REFUSED, "refused");
        CU_ASSERT(json_node_equal(vrot_jsonrpc_error_get_data(error), want));
        /* The private part follows the error through g_error_copy(). */
        copy = g_error_copy(error);
        CU_ASSERT(json_node_equal(vrot_jsonrpc_error_get_data(copy), want));
        vrot_jsonrpc_error_set_data(copy, NULL);
        CU_ASSERT_PTR_NULL(vrot_jsonrpc_error_get_data(copy));
        CU_ASSERT_PTR_NOT_NULL(vrot_jsonrpc_error_get_data(error));
}

/* ---- Error domain ---- */

static void test_jsonrpc_error_names(void)
{
        static const struct {
                gint code;
                const char *name;
        } cases[] = {
                { VROT_JSONRPC_ERROR_PARSE, "parse error" },
                { VROT_JSONRPC_ERROR_INVALID_REQUEST, "invalid request" },
                { VROT_JSONRPC_ERROR_METHOD_NOT_FOUND, "method not found" },
                { VROT_JSONRPC_ERROR_INVALID_PARAMS, "invalid params" },
                { VROT_JSONRPC_ERROR_INTERNAL, "internal error" },
                { VROT_JSONRPC_ERROR_PERMISSION_DENIED, "permission denied" },
                { VROT_JSONRPC_ERROR_NOT_FOUND, "not found" },
                { VROT_JSONRPC_ERROR_CONFLICT, "conflict" },
                { VROT_JSONRPC_ERROR_STATE_REFUSED, "state refused" },
                { VROT_JSONRPC_ERROR_HOST_TPM, "host TPM failure" },
                { VROT_JSONRPC_ERROR_BUSY, "busy" },
                { VROT_JSONRPC_ERROR_TOO_LARGE, "request too large" },
                { VROT_JSONRPC_ERROR_NOT_ENROLLED, "not enrolled" },
                { -32050, "server error" },
                { 0, "server error" },
        };
        g_autoptr(GError) other = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_FAILED, "x");

        for (size_t i = 0; i < N(cases); i++)
                CU_ASSERT_STRING_EQUAL(vrot_jsonrpc_error_name(cases[i].code), cases[i].name);
        /* The codes are the wire codes (vrot-api(7)); they must not move. */
        CU_ASSERT_EQUAL(VROT_JSONRPC_ERROR_PERMISSION_DENIED, -32000);
        CU_ASSERT_EQUAL(VROT_JSONRPC_ERROR_TOO_LARGE, -32006);
        CU_ASSERT_PTR_NULL(vrot_jsonrpc_error_get_id(other));
        CU_ASSERT_PTR_NULL(vrot_jsonrpc_error_get_data(other));
        CU_ASSERT_PTR_NULL(vrot_jsonrpc_error_get_id(NULL));
}

/* ---- Splitter ---- */

typedef struct SplitCase {
        const char *what;
        gsize max;
        const char *feeds[4];   /* NULL-terminated */
        const char *lines[4];   /* expected, NULL-terminated */
        int fail_at;            /* index of the feed that fails, or -1 */
        gsize pending;          /* at the end */
} SplitCase;

static const SplitCase split_cases[] = {
        { "one line", 16, { "abc\n" }, { "abc" }, -1, 0 },
        { "two in one feed", 16, { "a\nbc\n" }, { "a", "bc" }, -1, 0 },
        { "split across feeds", 16, { "ab", "c", "d\ne" }, { "abcd" }, -1, 1 },
        { "newline alone", 16, { "abc", "\n" }, { "abc" }, -1, 0 },
        { "empty lines", 16, { "\n\na\n" }, { "", "", "a" }, -1, 0 },
        { "CR kept", 16, { "a\r\n" }, { "a\r" }, -1, 0 },
        { "no newline yet", 16, { "abc" }, { NULL }, -1, 3 },
        { "exactly max", 4, { "abcd\n" }, { "abcd" }, -1, 0 },
        { "exactly max in pieces", 4, { "ab", "cd", "\n" }, { "abcd" }, -1, 0 },
        { "over max, no newline", 4, { "abcde" }, { NULL }, 0, 0 },
        { "over max, in pieces", 4, { "abc", "de" }, { NULL }, 1, 0 },
        { "over max with newline", 4, { "abcde\n" }, { NULL }, 0, 0 },
        { "good line, then too long", 4, { "ab\nabcdefgh" }, { "ab" }, 0, 0 },
        { "stays failed", 4, { "abcde", "\nok\n" }, { NULL }, 0, 0 },
        { "empty feed", 4, { "", "a\n" }, { "a" }, -1, 0 },
};

static void test_jsonrpc_splitter_table(void)
{
        for (size_t i = 0; i < N(split_cases); i++) {
                const SplitCase *c = &split_cases[i];
                g_autoptr(VrotJsonrpcSplitter) s = vrot_jsonrpc_splitter_new(c->max);
                gchar *line;
                gsize len, n = 0;

                for (int f = 0; f < 4 && c->feeds[f]; f++) {
                        g_autoptr(GError) error = NULL;
                        gboolean ok = vrot_jsonrpc_splitter_feed(s, c->feeds[f],
                                                                 strlen(c->feeds[f]), &error);

                        if (ok != (c->fail_at < 0 || f < c->fail_at)) {
                                fprintf(stderr, "\n  %s: feed %d\n", c->what, f);
                                CU_FAIL("feed result");
                        }
                        if (!ok)
                                check_error(c->what, error, VROT_JSONRPC_ERROR,
                                            VROT_JSONRPC_ERROR_TOO_LARGE, "request too large");
                }
                while ((line = vrot_jsonrpc_splitter_pop(s, &len))) {
                        if (n >= 4 || !c->lines[n] || strcmp(line, c->lines[n]) != 0 ||
                            len != strlen(line)) {
                                fprintf(stderr, "\n  %s: line %zu \"%s\"\n", c->what, n, line);
                                CU_FAIL("wrong line");
                        }
                        g_free(line);
                        n++;
                }
                CU_ASSERT(n < 4 && c->lines[n] == NULL);
                CU_ASSERT_EQUAL(vrot_jsonrpc_splitter_pending(s), c->pending);
        }
}

/* Lines with NUL bytes pass through whole; the parser refuses them. */
static void test_jsonrpc_splitter_binary(void)
{
        static const char bytes[] = { 'a', '\0', 'b', '\n', '\0', '\n' };
        g_autoptr(VrotJsonrpcSplitter) s = vrot_jsonrpc_splitter_new(VROT_JSONRPC_MAX_LINE);
        g_autofree gchar *one = NULL, *two = NULL;
        gsize len1 = 0, len2 = 0;

        CU_ASSERT_TRUE(vrot_jsonrpc_splitter_feed(s, bytes, sizeof(bytes), NULL));
        one = vrot_jsonrpc_splitter_pop(s, &len1);
        two = vrot_jsonrpc_splitter_pop(s, &len2);
        CU_ASSERT(one && len1 == 3 && memcmp(one, "a\0b", 4) == 0);
        CU_ASSERT(two && len2 == 1 && two[0] == '\0');
        CU_ASSERT_PTR_NULL(vrot_jsonrpc_splitter_pop(s, NULL));
}

/* A 1 MiB line fed in 4 KiB reads: accepted at the limit, refused one byte
 * later, without the splitter holding more than the limit. */
static void test_jsonrpc_splitter_large(void)
{
        for (gsize extra = 0; extra <= 1; extra++) {
                g_autoptr(VrotJsonrpcSplitter) s = vrot_jsonrpc_splitter_new(VROT_JSONRPC_MAX_LINE);
                g_autoptr(GString) req = padded_request(VROT_JSONRPC_MAX_LINE + extra);
                g_autoptr(GError) error = NULL;
                g_autoptr(VrotJsonrpcRequest) parsed = NULL;
                g_autofree gchar *line = NULL;
                gboolean ok = TRUE;
                gsize len = 0;

                g_string_append_c(req, '\n');
                for (gsize off = 0; ok && off < req->len; off += 4096)
                        ok = vrot_jsonrpc_splitter_feed(s, req->str + off,
                                                        MIN(4096, req->len - off), &error);
                CU_ASSERT(vrot_jsonrpc_splitter_pending(s) <= VROT_JSONRPC_MAX_LINE);
                line = vrot_jsonrpc_splitter_pop(s, &len);
                if (extra) {
                        CU_ASSERT_FALSE(ok);
                        check_error("1 MiB + 1", error, VROT_JSONRPC_ERROR,
                                    VROT_JSONRPC_ERROR_TOO_LARGE, "longer than 1048576");
                        CU_ASSERT_PTR_NULL(line);
                } else {
                        CU_ASSERT_TRUE(ok);
                        CU_ASSERT_EQUAL(len, VROT_JSONRPC_MAX_LINE);
                        CU_ASSERT_TRUE(vrot_jsonrpc_parse_request(line, len, &parsed, NULL));
                }
        }
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_jsonrpc_parse_request_valid),
                UNIT_CASE(test_jsonrpc_parse_request_invalid),
                UNIT_CASE(test_jsonrpc_parse_request_too_large),
                UNIT_CASE(test_jsonrpc_parse_request_depth),
                UNIT_CASE(test_jsonrpc_parse_request_depth_bomb),
                UNIT_CASE(test_jsonrpc_param_table),
                UNIT_CASE(test_jsonrpc_param_no_params),
                UNIT_CASE(test_jsonrpc_params_check_known),
                UNIT_CASE(test_jsonrpc_param_has),
                UNIT_CASE(test_jsonrpc_base64_decode),
                UNIT_CASE(test_jsonrpc_base64_round_trip),
                UNIT_CASE(test_jsonrpc_build_table),
                UNIT_CASE(test_jsonrpc_round_trip),
                UNIT_CASE(test_jsonrpc_parse_response_errors),
                UNIT_CASE(test_jsonrpc_parse_response_data),
                UNIT_CASE(test_jsonrpc_error_names),
                UNIT_CASE(test_jsonrpc_splitter_table),
                UNIT_CASE(test_jsonrpc_splitter_binary),
                UNIT_CASE(test_jsonrpc_splitter_large),
        };
        return UNIT_RUN("jsonrpc", cases);
}
