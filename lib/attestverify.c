/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "attestverify.h"
#include "autoptr.h"
#include "tpmevidence.h"
#include "x509.h"
#include "hex.h"

G_DEFINE_QUARK(vrot-attestverify-error-quark, vrot_attestverify_error)

#define MAX_CHAIN 8

/* ---- the policy ---------------------------------------------------------------------- */

/* One accepted state: the PCRs it names (mask) and their values. */
typedef struct State {
        guint32 mask;
        guint8 values[VROT_TPMEVIDENCE_PCRS][32];
} State;

struct VrotAttestPolicy {
        GArray *host, *guest;           /* State */
};

void vrot_attest_policy_free(VrotAttestPolicy *p)
{
        if (!p)
                return;
        if (p->host)
                g_array_unref(p->host);
        if (p->guest)
                g_array_unref(p->guest);
        g_free(p);
}

static gboolean parse_hex32(const gchar *hex, guint8 out[32])
{
        return hex && strlen(hex) == 64 && vrot_hex_decode(hex, 64, out);
}

static gboolean parse_pcr_index(const gchar *s, guint *ret)
{
        guint64 v;

        if (!g_ascii_string_to_unsigned(s, 10, 0, VROT_TPMEVIDENCE_PCRS - 1, &v, NULL) ||
            (s[0] == '0' && s[1]))
                return FALSE;
        *ret = (guint)v;
        return TRUE;
}

/* {"<index>": "<hex>", ...} into @st; FALSE on anything else. */
static gboolean parse_pcr_map(JsonNode *node, State *st)
{
        JsonObject *o = node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        g_autoptr(GList) names = o ? json_object_get_members(o) : NULL;

        memset(st, 0, sizeof(*st));
        if (!o)
                return FALSE;
        for (GList *l = names; l; l = l->next) {
                JsonNode *v = json_object_get_member(o, l->data);
                guint i;

                if (!parse_pcr_index(l->data, &i) || !JSON_NODE_HOLDS_VALUE(v) ||
                    json_node_get_value_type(v) != G_TYPE_STRING ||
                    !parse_hex32(json_node_get_string(v), st->values[i]))
                        return FALSE;
                st->mask |= 1u << i;
        }
        return TRUE;
}

static GArray *parse_states(JsonObject *root, const char *name, GError **error)
{
        JsonNode *node = json_object_get_member(root, name);
        JsonArray *list = node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;
        g_autoptr(GArray) states = g_array_new(FALSE, TRUE, sizeof(State));

        if (!list) {
                g_set_error(error, VROT_ATTESTVERIFY_ERROR, VROT_ATTESTVERIFY_ERROR_POLICY,
                            "the policy has no \"%s\" list of accepted states", name);
                return NULL;
        }
        for (guint i = 0; i < json_array_get_length(list); i++) {
                State st;

                if (!parse_pcr_map(json_array_get_element(list, i), &st)) {
                        g_set_error(error, VROT_ATTESTVERIFY_ERROR, VROT_ATTESTVERIFY_ERROR_POLICY,
                                    "%s state %u: not an object of PCR index (0 to %d) to 64 "
                                    "hex digits", name, i, VROT_TPMEVIDENCE_PCRS - 1);
                        return NULL;
                }
                g_array_append_val(states, st);
        }
        return g_steal_pointer(&states);
}

VrotAttestPolicy *vrot_attest_policy_parse(const gchar *text, gsize len, GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(VrotAttestPolicy) p = g_new0(VrotAttestPolicy, 1);
        g_autoptr(GError) local = NULL;
        JsonNode *root;
        JsonObject *o;

        if (len > VROT_ATTESTVERIFY_MAX || !json_parser_load_from_data(parser, text, (gssize)len,
                                                                      &local) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_set_error(error, VROT_ATTESTVERIFY_ERROR, VROT_ATTESTVERIFY_ERROR_POLICY,
                            "the policy is not a JSON object%s%s", local ? ": " : "",
                            local ? local->message : "");
                return NULL;
        }
        o = json_node_get_object(root);
        if (json_object_get_size(o) != 2 || !(p->host = parse_states(o, "host", error)) ||
            !(p->guest = parse_states(o, "guest", error))) {
                if (error && !*error)
                        g_set_error_literal(error, VROT_ATTESTVERIFY_ERROR,
                                            VROT_ATTESTVERIFY_ERROR_POLICY,
                                            "the policy has members other than \"host\" and "
                                            "\"guest\"");
                return NULL;
        }
        return g_steal_pointer(&p);
}

/* ---- the bundle ---------------------------------------------------------------------- */

typedef struct Bundle {
        gchar *instance;
        GBytes *nonce;
        VrotTpmevidenceQuote *vtpm, *host;
        X509 *ak_cert, *ek_cert;
        STACK_OF(X509) *chain;          /* host CA first */
        X509_CRL *crl;
        GBytes *ca_public, *ca_attest, *ca_signature;
} Bundle;

static void bundle_clear(Bundle *b)
{
        g_free(b->instance);
        if (b->nonce)
                g_bytes_unref(b->nonce);
        vrot_tpmevidence_quote_free(b->vtpm);
        vrot_tpmevidence_quote_free(b->host);
        X509_free(b->ak_cert);
        X509_free(b->ek_cert);
        sk_X509_pop_free(b->chain, X509_free);
        X509_CRL_free(b->crl);
        if (b->ca_public)
                g_bytes_unref(b->ca_public);
        if (b->ca_attest)
                g_bytes_unref(b->ca_attest);
        if (b->ca_signature)
                g_bytes_unref(b->ca_signature);
}

static gboolean bad(GError **error, const char *what)
{
        g_set_error(error, VROT_ATTESTVERIFY_ERROR, VROT_ATTESTVERIFY_ERROR_BUNDLE,
                    "the bundle's %s is missing or malformed", what);
        return FALSE;
}

static gboolean only(JsonObject *o, const char *const *known)
{
        g_autoptr(GList) names = json_object_get_members(o);

        for (GList *l = names; l; l = l->next)
                if (!g_strv_contains(known, l->data))
                        return FALSE;
        return TRUE;
}

static const gchar *str(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);

        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
               ? json_node_get_string(n) : NULL;
}

static JsonObject *obj(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static GBytes *b64(JsonObject *o, const char *name)
{
        const gchar *s = str(o, name);
        guchar *data;
        gsize len = 0;

        if (!s || !*s || strlen(s) % 4 != 0 ||
            strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
            strlen(s))
                return NULL;
        data = g_base64_decode(s, &len);
        if (!len) {
                g_free(data);
                return NULL;
        }
        return g_bytes_new_take(data, len);
}

/* A nullable base64 member (event logs): absent or null is fine; read, never judged. */
static gboolean optional_b64(JsonObject *o, const char *name)
{
        JsonNode *n = json_object_get_member(o, name);
        g_autoptr(GBytes) b = NULL;

        return !n || JSON_NODE_HOLDS_NULL(n) || (b = b64(o, name)) != NULL;
}

static X509 *cert(JsonObject *o, const char *name)
{
        const gchar *pem = str(o, name);

        return pem ? vrot_x509_from_pem(pem, strlen(pem), NULL) : NULL;
}

gboolean vrot_attest_pcrs_parse(JsonNode *node, guint32 *ret_mask, GBytes **ret_values)
{
        g_autoptr(GByteArray) values = g_byte_array_new();
        State st;

        if (!parse_pcr_map(node, &st) || !st.mask)
                return FALSE;
        for (guint i = 0; i < VROT_TPMEVIDENCE_PCRS; i++)
                if (st.mask & (1u << i))
                        g_byte_array_append(values, st.values[i], 32);
        *ret_mask = st.mask;
        *ret_values = g_byte_array_free_to_bytes(g_steal_pointer(&values));
        return TRUE;
}

static gboolean parse_quote(JsonObject *o, VrotTpmevidenceQuote **ret)
{
        g_autoptr(VrotTpmevidenceQuote) q = g_new0(VrotTpmevidenceQuote, 1);

        if (!(q->ak_public = b64(o, "ak_public")) || !(q->attest = b64(o, "attest")) ||
            !(q->signature = b64(o, "signature")) ||
            !vrot_attest_pcrs_parse(json_object_get_member(o, "pcrs"), &q->pcr_mask,
                                    &q->pcr_values))
                return FALSE;
        *ret = g_steal_pointer(&q);
        return TRUE;
}

static gboolean parse_chain(JsonObject *o, STACK_OF(X509) **ret)
{
        JsonNode *n = json_object_get_member(o, "ca_chain_pem");
        JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
        STACK_OF(X509) *chain;

        if (!a || json_array_get_length(a) == 0 || json_array_get_length(a) > MAX_CHAIN)
                return FALSE;
        chain = sk_X509_new_null();
        for (guint i = 0; chain && i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                const gchar *pem = JSON_NODE_HOLDS_VALUE(e) &&
                                   json_node_get_value_type(e) == G_TYPE_STRING
                                   ? json_node_get_string(e) : NULL;
                X509 *x = pem ? vrot_x509_from_pem(pem, strlen(pem), NULL) : NULL;

                if (!x || !sk_X509_push(chain, x)) {
                        X509_free(x);
                        sk_X509_pop_free(chain, X509_free);
                        return FALSE;
                }
        }
        *ret = chain;
        return chain != NULL;
}

static X509_CRL *crl_from_pem(const gchar *pem)
{
        g_autoptr(BIO) bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
        X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;

        ERR_clear_error();
        return crl;
}

static gboolean parse_bundle(const gchar *text, gsize len, Bundle *b, GError **error)
{
        static const char *const top[] = { "version", "instance", "nonce", "vtpm", "host", NULL };
        static const char *const vtpm_k[] = { "ak_public", "attest", "signature", "pcrs",
                                              "ak_cert_pem", "ek_cert_pem", "event_log", NULL };
        static const char *const host_k[] = { "ak_public", "attest", "signature", "pcrs",
                                              "ca_certify", "ca_chain_pem", "crl_pem",
                                              "event_log", NULL };
        static const char *const ca_k[] = { "ca_public", "attest", "signature", NULL };
        g_autoptr(JsonParser) parser = json_parser_new();
        JsonNode *root;
        JsonObject *o, *vtpm, *host, *ca;

        if (len > VROT_ATTESTVERIFY_MAX || !json_parser_load_from_data(parser, text, (gssize)len,
                                                                      NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                return bad(error, "JSON (not an object)");
        o = json_node_get_object(root);
        if (!only(o, top) || json_object_get_int_member_with_default(o, "version", 0) != 1)
                return bad(error, "top level (members, or version other than 1)");
        if (!str(o, "instance") || !(b->instance = g_strdup(str(o, "instance"))) ||
            !(b->nonce = b64(o, "nonce")))
                return bad(error, "instance or nonce");
        if (!(vtpm = obj(o, "vtpm")) || !only(vtpm, vtpm_k) || !parse_quote(vtpm, &b->vtpm) ||
            !(b->ak_cert = cert(vtpm, "ak_cert_pem")) || !(b->ek_cert = cert(vtpm, "ek_cert_pem")) ||
            !optional_b64(vtpm, "event_log"))
                return bad(error, "vtpm part");
        if (!(host = obj(o, "host")) || !only(host, host_k) || !parse_quote(host, &b->host) ||
            !parse_chain(host, &b->chain) || !(b->crl = crl_from_pem(str(host, "crl_pem"))) ||
            !optional_b64(host, "event_log"))
                return bad(error, "host part");
        if (!(ca = obj(host, "ca_certify")) || !only(ca, ca_k) ||
            !(b->ca_public = b64(ca, "ca_public")) || !(b->ca_attest = b64(ca, "attest")) ||
            !(b->ca_signature = b64(ca, "signature")))
                return bad(error, "host ca_certify");
        return TRUE;
}

/* ---- the checks ---------------------------------------------------------------------- */

static void check_free(VrotAttestCheck *c)
{
        g_free(c->detail);
        g_free(c);
}

static gboolean record(GPtrArray *checks, const char *name, gboolean ok, const char *fmt, ...)
        G_GNUC_PRINTF(4, 5);
static gboolean record(GPtrArray *checks, const char *name, gboolean ok, const char *fmt, ...)
{
        VrotAttestCheck *c = g_new0(VrotAttestCheck, 1);
        va_list ap;

        va_start(ap, fmt);
        c->name = name;
        c->ok = ok;
        c->detail = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_ptr_array_add(checks, c);
        return ok;
}

/* @x chains to @root through @untrusted (and, with @crl, is not revoked);
 * the X509_V_ERR on failure in *@ret_err. */
static gboolean chains(X509 *x, X509 *root, STACK_OF(X509) *untrusted, X509_CRL *crl,
                       int *ret_err)
{
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(X509_STORE_CTX) ctx = X509_STORE_CTX_new();
        gboolean ok;

        ok = store && ctx && X509_STORE_add_cert(store, root) == 1 &&
             (!crl || X509_STORE_add_crl(store, crl) == 1) &&
             X509_STORE_CTX_init(ctx, store, x, untrusted) == 1;
        if (ok && crl)
                X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK);
        ok = ok && X509_verify_cert(ctx) == 1;
        *ret_err = ctx ? X509_STORE_CTX_get_error(ctx) : X509_V_ERR_UNSPECIFIED;
        ERR_clear_error();
        return ok;
}


static void check_certs(const Bundle *b, X509 *root, X509_CRL *crl, GPtrArray *checks)
{
        X509 *host_ca = sk_X509_value(b->chain, 0);
        g_autofree gchar *instance = NULL, *want = g_strconcat("urn:uuid:", b->instance, NULL);
        g_autoptr(GBytes) ek_sha256 = NULL;
        guint8 md[32];
        unsigned int md_len = 0;
        int err = 0;

        if (chains(host_ca, root, b->chain, NULL, &err))
                record(checks, "host-chain", TRUE, "the host CA certificate chains to the root");
        else
                record(checks, "host-chain", FALSE, "the host CA certificate does not chain to "
                       "the root: %s", X509_verify_cert_error_string(err));

        if (!chains(b->ak_cert, root, b->chain, NULL, &err))
                record(checks, "ak-chain", FALSE, "the AK certificate does not chain to the root "
                       "through the host CA: %s", X509_verify_cert_error_string(err));
        else if (!vrot_x509_has_eku(b->ak_cert, VROT_X509_OID_AIK_CERTIFICATE))
                record(checks, "ak-chain", FALSE, "the AK certificate is not an AIK certificate "
                       "(extKeyUsage 2.23.133.8.3)");
        else if (!vrot_x509_vtpm_binding(b->ak_cert, &instance, &ek_sha256, NULL) ||
                 !g_str_equal(instance, want))
                record(checks, "ak-chain", FALSE, "the AK certificate is not bound to instance %s",
                       b->instance);
        else
                record(checks, "ak-chain", TRUE, "the AK certificate chains to the root and is "
                       "bound to instance %s", b->instance);

        if (chains(b->ak_cert, root, b->chain, crl, &err))
                record(checks, "ak-revocation", TRUE, "the AK certificate is not revoked");
        else
                record(checks, "ak-revocation", FALSE, "the AK certificate with the host CA's CRL: "
                       "%s", X509_verify_cert_error_string(err));

        if (!chains(b->ek_cert, root, b->chain, NULL, &err))
                record(checks, "ek-chain", FALSE, "the EK certificate does not chain to the root: "
                       "%s", X509_verify_cert_error_string(err));
        else if (!ek_sha256 || !X509_digest(b->ek_cert, EVP_sha256(), md, &md_len) ||
                 md_len != 32 || g_bytes_get_size(ek_sha256) != 32 ||
                 memcmp(g_bytes_get_data(ek_sha256, NULL), md, 32) != 0)
                record(checks, "ek-chain", FALSE, "the EK certificate is not the one the AK "
                       "certificate names");
        else
                record(checks, "ek-chain", TRUE, "the EK certificate chains to the root and is the "
                       "one the AK was proved against");
}

static void check_vtpm(const Bundle *b, GBytes *nonce, GPtrArray *checks)
{
        g_autoptr(EVP_PKEY) ak = NULL;
        g_autoptr(GError) e = NULL;
        gboolean same_nonce = g_bytes_equal(nonce, b->nonce);

        if (!vrot_tpmevidence_verify_quote(b->vtpm, nonce, &ak, &e)) {
                gboolean is_nonce = g_error_matches(e, VROT_TPMEVIDENCE_ERROR,
                                                    VROT_TPMEVIDENCE_ERROR_NONCE);
                gboolean is_pcrs = g_error_matches(e, VROT_TPMEVIDENCE_ERROR,
                                                   VROT_TPMEVIDENCE_ERROR_PCRS);
                record(checks, "nonce", !is_nonce && same_nonce, is_nonce || !same_nonce
                       ? "the vTPM quote is not over your nonce (stale or replayed)"
                       : "the bundle names your nonce");
                if (is_nonce || is_pcrs)
                        record(checks, "vtpm-quote", TRUE, "a TPM-made quote signed by the AK");
                else
                        record(checks, "vtpm-quote", FALSE, "%s", e->message);
                if (is_pcrs)
                        record(checks, "vtpm-pcrs", FALSE, "%s", e->message);
                else
                        record(checks, "vtpm-pcrs", FALSE, "not reached");
                return;
        }
        record(checks, "nonce", same_nonce, same_nonce ? "the vTPM quote is over your nonce"
               : "the bundle names another nonce than the quote's");
        if (EVP_PKEY_eq(X509_get0_pubkey(b->ak_cert), ak) == 1)
                record(checks, "vtpm-quote", TRUE, "a TPM-made quote signed by the certified AK");
        else
                record(checks, "vtpm-quote", FALSE, "the quote is signed by another key than the "
                       "certified AK");
        record(checks, "vtpm-pcrs", TRUE, "the vTPM PCR values are those quoted");
}

static void check_host(const Bundle *b, GBytes *nonce, GPtrArray *checks)
{
        guint8 digest[32];
        g_autoptr(GBytes) link = NULL;
        g_autoptr(GError) e = NULL;
        g_autoptr(EVP_PKEY) ca = NULL;
        VrotTpmevidenceKey ev = { .ak_public = b->host->ak_public, .key_public = b->ca_public,
                                  .attest = b->ca_attest, .signature = b->ca_signature };

        SHA256(g_bytes_get_data(b->vtpm->attest, NULL), g_bytes_get_size(b->vtpm->attest), digest);
        link = g_bytes_new(digest, sizeof(digest));
        if (vrot_tpmevidence_verify_quote(b->host, link, NULL, &e)) {
                record(checks, "link", TRUE, "the host quote is over the digest of the vTPM quote");
                record(checks, "host-quote", TRUE, "a TPM-made quote by the host AK, PCRs as given");
        } else if (g_error_matches(e, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_NONCE)) {
                record(checks, "link", FALSE, "the host quote is not over this vTPM quote "
                       "(paired with another quote)");
                record(checks, "host-quote", TRUE, "signed by a host AK (checked up to the link)");
        } else if (g_error_matches(e, VROT_TPMEVIDENCE_ERROR, VROT_TPMEVIDENCE_ERROR_PCRS)) {
                record(checks, "link", TRUE, "the host quote is over the digest of the vTPM quote");
                record(checks, "host-quote", FALSE, "%s", e->message);
        } else {
                record(checks, "link", FALSE, "not reached");
                record(checks, "host-quote", FALSE, "%s", e->message);
        }
        g_clear_error(&e);
        if (!vrot_tpmevidence_verify_key(&ev, nonce, &ca, &e))
                record(checks, "host-ak", FALSE, "the host AK's certification of the CA key: %s",
                       e->message);
        else if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(b->chain, 0)), ca) != 1)
                record(checks, "host-ak", FALSE, "the host AK certified another key than the host "
                       "CA certificate's");
        else
                record(checks, "host-ak", TRUE, "the host AK is in the TPM that holds the host CA "
                       "key");
}

/* Does @q's PCR set match one of @states (every PCR a state names)? */
static void check_policy(const VrotTpmevidenceQuote *q, GArray *states, const char *name,
                         const char *who, GPtrArray *checks)
{
        const guint8 *v = g_bytes_get_data(q->pcr_values, NULL);
        guint8 have[VROT_TPMEVIDENCE_PCRS][32];

        for (guint i = 0, k = 0; i < VROT_TPMEVIDENCE_PCRS; i++)
                if (q->pcr_mask & (1u << i))
                        memcpy(have[i], v + 32 * k++, 32);
        for (guint s = 0; s < states->len; s++) {
                const State *st = &g_array_index(states, State, s);
                gboolean match = (st->mask & ~q->pcr_mask) == 0;

                for (guint i = 0; match && i < VROT_TPMEVIDENCE_PCRS; i++)
                        if (st->mask & (1u << i))
                                match = memcmp(st->values[i], have[i], 32) == 0;
                if (match) {
                        record(checks, name, TRUE, "the %s PCRs match accepted state %u", who, s);
                        return;
                }
        }
        record(checks, name, FALSE, "the %s PCRs match none of the %u accepted states", who,
               states->len);
}

gboolean vrot_attest_verify(const gchar *text, gsize len, X509 *root, X509_CRL *crl,
                            GBytes *nonce, const VrotAttestPolicy *policy,
                            GPtrArray **ret_checks, GError **error)
{
        g_autoptr(GPtrArray) checks = g_ptr_array_new_with_free_func((GDestroyNotify)check_free);
        Bundle b = { 0 };

        g_return_val_if_fail(text && root && nonce && policy && ret_checks, FALSE);
        if (!parse_bundle(text, len, &b, error)) {
                bundle_clear(&b);
                return FALSE;
        }
        check_certs(&b, root, crl ? crl : b.crl, checks);
        check_vtpm(&b, nonce, checks);
        check_host(&b, nonce, checks);
        check_policy(b.host, policy->host, "host-policy", "host", checks);
        check_policy(b.vtpm, policy->guest, "guest-policy", "vTPM", checks);
        bundle_clear(&b);
        *ret_checks = g_steal_pointer(&checks);
        return TRUE;
}

gboolean vrot_attest_trusted(const GPtrArray *checks)
{
        for (guint i = 0; i < checks->len; i++)
                if (!((VrotAttestCheck *)checks->pdata[i])->ok)
                        return FALSE;
        return checks->len > 0;
}
