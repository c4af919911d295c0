/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host's state master key, sealed in the host TPM under an authorised
 * PCR policy.  See sealkey.h for the model and docs/sealing.md for the
 * formats and the command counts.
 *
 * Why the pieces are the way they are:
 *  - PolicyAuthorize instead of a plain PCR seal: a plain PCR seal bricks
 *    every vTPM of the host at the first firmware or kernel update.  With
 *    PolicyAuthorize the operator signs each new set of PCR values and the
 *    sealed object never changes (TPM2 Part 1 19.7.11, Part 3 23.16).
 *  - Policy digests are computed in software: creation needs no trial
 *    session, and the unit tests compare them against a trial session.
 *  - Sessions are salted with the storage parent and carry parameter
 *    encryption (TPM2 Part 1 21), so the key crosses the bus to a discrete
 *    TPM encrypted, in both directions.
 *  - The operator key is loaded in the owner hierarchy: a key loaded in the
 *    NULL hierarchy gets NULL tickets from VerifySignature, which
 *    PolicyAuthorize refuses (TPM2 Part 3 20.1).
 *  - Key bytes live in VrotSecret buffers.  ESYS marshals them into its own
 *    command buffer, which we cannot lock; docs/sealing.md lists that.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "bytes.h"
#include "durable.h"
#include "sealkey.h"
#include "x509.h"
#include "hex.h"

G_DEFINE_QUARK(vrot-sealkey-error-quark, vrot_sealkey_error)


#define SHA256_LEN 32
#define PCR_MAX 24
#define AUTH_MAX_FILE (16 * 1024)
#define SIG_MAX_LEN 1024
#define POLICY_REF_LEN (sizeof(VROT_SEALKEY_POLICY_REF) - 1)

#define SEALED_MAGIC "VRSK"
#define RECOVERY_MAGIC "VRRC"
#define FORMAT_VERSION 1
#define RECOVERY_ALG_RSA_OAEP_SHA256 1
#define RECOVERY_HEADER_LEN 42
#define AUTH_MAGIC_LINE "vrot-pcr-authorisation 1"

static const struct {
        TPMI_ALG_HASH alg;
        const char *name;
        gsize size;
} banks[] = {
        { TPM2_ALG_SHA1, "sha1", TPM2_SHA1_DIGEST_SIZE },
        { TPM2_ALG_SHA256, "sha256", TPM2_SHA256_DIGEST_SIZE },
        { TPM2_ALG_SHA384, "sha384", TPM2_SHA384_DIGEST_SIZE },
        { TPM2_ALG_SHA512, "sha512", TPM2_SHA512_DIGEST_SIZE },
};

struct VrotSealkeyAuth {
        char *label;                 /* file name, NULL if parsed from a buffer */
        VrotSealkeyPcrs pcrs;
        GBytes *values;              /* bank digest size per PCR, ascending */
        TPM2B_DIGEST policy;         /* PolicyPCR digest, the approvedPolicy */
        TPM2B_NAME signer;           /* name of the key that signed */
        TPMI_ALG_SIG_SCHEME scheme;  /* TPM2_ALG_ECDSA or TPM2_ALG_RSASSA */
        GBytes *signature;           /* DER ECDSA-Sig-Value or PKCS#1 v1.5 */
};

/* ---- boundary helpers: TSS2_RC, OpenSSL and VrotError to GError ---------- */

static TSS2_RC rc_base(TSS2_RC rc)
{
        if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
                return rc;
        if (rc & TPM2_RC_FMT1)
                return rc & (TPM2_RC_FMT1 | 0x3f);
        return rc & (TPM2_RC_WARN | TPM2_RC_VER1 | 0x7f);
}

/*
 * The one place a TSS2_RC becomes a GError.  The code says what went wrong
 * for the caller (a tampered object, a bad signature, a refused policy),
 * the message says which step and what the TPM answered.
 */
static gboolean tpm_ok(TSS2_RC rc, const char *what, GError **error)
{
        static const struct {
                TSS2_RC base;
                VrotSealkeyError code;
        } map[] = {
                { TPM2_RC_INTEGRITY, VROT_SEALKEY_ERROR_TAMPERED },
                { TPM2_RC_BINDING, VROT_SEALKEY_ERROR_TAMPERED },
                { TPM2_RC_SIGNATURE, VROT_SEALKEY_ERROR_BAD_SIGNATURE },
                { TPM2_RC_SCHEME, VROT_SEALKEY_ERROR_BAD_SIGNATURE },
                { TPM2_RC_POLICY_FAIL, VROT_SEALKEY_ERROR_POLICY },
                { TPM2_RC_VALUE, VROT_SEALKEY_ERROR_POLICY },
                { TPM2_RC_PCR_CHANGED, VROT_SEALKEY_ERROR_POLICY },
        };
        VrotSealkeyError code = VROT_SEALKEY_ERROR_TPM;

        if (rc == TSS2_RC_SUCCESS)
                return TRUE;
        for (gsize i = 0; i < G_N_ELEMENTS(map); i++)
                if (rc_base(rc) == map[i].base)
                        code = map[i].code;
        g_set_error(error, VROT_SEALKEY_ERROR, code, "%s: host TPM: %s (0x%x)",
                    what, Tss2_RC_Decode(rc), rc);
        return FALSE;
}

/* The one place an OpenSSL error queue becomes a GError; clears the queue. */
static void set_ossl_error(GError **error, VrotSealkeyError code, const char *what)
{
        unsigned long e = ERR_peek_error();
        char reason[256] = "unknown error";

        if (e)
                ERR_error_string_n(e, reason, sizeof(reason));
        ERR_clear_error();
        g_set_error(error, VROT_SEALKEY_ERROR, code, "%s: %s", what, reason);
}

static void set_vrot_error(GError **error, const VrotError *verr)
{
        g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED, "%s", verr->msg);
}

/* ---- small helpers -------------------------------------------------------- */

static char *hex_encode(const guint8 *buf, gsize len)
{
        static const char digits[] = "0123456789abcdef";
        char *s = g_malloc(len * 2 + 1);

        for (gsize i = 0; i < len; i++) {
                s[2 * i] = digits[buf[i] >> 4];
                s[2 * i + 1] = digits[buf[i] & 0xf];
        }
        s[len * 2] = '\0';
        return s;
}

/* Decodes exactly @len hex digits (either case) into @out; FALSE otherwise. */
static gboolean hex_decode(const char *s, gsize len, guint8 *out, gsize out_max, gsize *ret_len)
{
        if (len == 0 || len % 2 || len / 2 > out_max || !vrot_hex_decode(s, len, out))
                return FALSE;
        *ret_len = len / 2;
        return TRUE;
}

/* SHA-256 of public data (policies, PCR values, public keys): GChecksum
 * cannot fail and none of this needs wiping. */
static void sha256(GChecksum *sum, guint8 out[SHA256_LEN])
{
        gsize len = SHA256_LEN;

        g_checksum_get_digest(sum, out, &len);
        g_assert(len == SHA256_LEN);
}

static int bank_index(TPMI_ALG_HASH alg)
{
        for (gsize i = 0; i < G_N_ELEMENTS(banks); i++)
                if (banks[i].alg == alg)
                        return (int)i;
        return -1;
}

static gboolean digest_eq(const TPM2B_DIGEST *a, const TPM2B_DIGEST *b)
{
        return a->size == b->size && memcmp(a->buffer, b->buffer, a->size) == 0;
}

static gboolean name_eq(const TPM2B_NAME *a, const TPM2B_NAME *b)
{
        return a->size == b->size && memcmp(a->name, b->name, a->size) == 0;
}

static const char *label_of(const VrotSealkeyAuth *auth)
{
        return auth->label ? auth->label : "(unnamed authorisation)";
}

static gboolean write_in_dir(const char *dir, const char *name, const void *buf, gsize len,
                             mode_t mode, GError **error)
{
        VrotError verr = { 0 };
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (dfd < 0) {
                int e = errno;
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED,
                            "cannot open directory %s: %s", dir, g_strerror(e));
                return FALSE;
        }
        r = vrot_durable_write(dfd, name, buf, len, mode, 0, &verr);
        close(dfd);
        if (r < 0) {
                set_vrot_error(error, &verr);
                g_prefix_error(error, "%s: ", dir);
                return FALSE;
        }
        return TRUE;
}

static gboolean write_path(const char *path, const void *buf, gsize len, mode_t mode,
                           GError **error)
{
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *name = g_path_get_basename(path);

        return write_in_dir(dir, name, buf, len, mode, error);
}

/* ---- PCR selections ------------------------------------------------------- */

gboolean vrot_sealkey_pcrs_parse(const char *spec, VrotSealkeyPcrs *ret, GError **error)
{
        g_auto(GStrv) items = NULL;
        const char *colon;
        VrotSealkeyPcrs pcrs = { 0 };
        int bank = -1;

        g_return_val_if_fail(spec != NULL && ret != NULL, FALSE);
        colon = strchr(spec, ':');
        for (gsize i = 0; colon && i < G_N_ELEMENTS(banks); i++)
                if (strlen(banks[i].name) == (gsize)(colon - spec) &&
                    strncmp(spec, banks[i].name, (gsize)(colon - spec)) == 0)
                        bank = (int)i;
        if (bank < 0) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "PCR selection '%s': expected sha1|sha256|sha384|sha512:N[,N...]",
                            spec);
                return FALSE;
        }
        pcrs.bank = banks[bank].alg;
        items = g_strsplit(colon + 1, ",", -1);
        for (gsize i = 0; items[i]; i++) {
                guint64 n;

                if (!g_ascii_string_to_unsigned(items[i], 10, 0, PCR_MAX - 1, &n, NULL) ||
                    !g_ascii_isdigit(items[i][0]) || (pcrs.mask & (1u << n))) {
                        g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                                    "PCR selection '%s': '%s' is not a PCR number 0..23 "
                                    "listed once", spec, items[i]);
                        return FALSE;
                }
                pcrs.mask |= 1u << n;
        }
        if (pcrs.mask == 0) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "PCR selection '%s' selects no PCR", spec);
                return FALSE;
        }
        *ret = pcrs;
        return TRUE;
}

char *vrot_sealkey_pcrs_format(const VrotSealkeyPcrs *pcrs)
{
        int bank = bank_index(pcrs->bank);
        GString *s = g_string_new(bank >= 0 ? banks[bank].name : "unknown");
        char sep = ':';

        for (guint n = 0; n < PCR_MAX; n++)
                if (pcrs->mask & (1u << n)) {
                        g_string_append_printf(s, "%c%u", sep, n);
                        sep = ',';
                }
        return g_string_free(s, FALSE);
}

static void pcr_selection(TPMI_ALG_HASH bank, guint32 mask, TPML_PCR_SELECTION *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->count = 1;
        ret->pcrSelections[0].hash = bank;
        ret->pcrSelections[0].sizeofSelect = 3;
        ret->pcrSelections[0].pcrSelect[0] = (guint8)mask;
        ret->pcrSelections[0].pcrSelect[1] = (guint8)(mask >> 8);
        ret->pcrSelections[0].pcrSelect[2] = (guint8)(mask >> 16);
}

static gsize pcrs_values_len(const VrotSealkeyPcrs *pcrs)
{
        int bank = bank_index(pcrs->bank);

        g_assert(bank >= 0);
        return banks[bank].size * (gsize)__builtin_popcount(pcrs->mask);
}

/* What the host's PCRs were when read: per bank, which PCRs and values. */
typedef struct {
        guint32 mask[G_N_ELEMENTS(banks)];
        guint8 value[G_N_ELEMENTS(banks)][PCR_MAX][TPM2_SHA512_DIGEST_SIZE];
} PcrSnapshot;

/* Takes one TPM2_PCR_Read answer into @snap; returns the PCRs it held. */
static guint32 take_pcr_values(PcrSnapshot *snap, int bank, const TPML_PCR_SELECTION *sel,
                               const TPML_DIGEST *values)
{
        guint32 got = 0;
        guint32 v = 0;

        for (guint32 i = 0; i < sel->count; i++) {
                const TPMS_PCR_SELECTION *s = &sel->pcrSelections[i];

                if (s->hash != banks[bank].alg)
                        return 0;
                for (guint n = 0; n < PCR_MAX && n / 8 < s->sizeofSelect; n++) {
                        if (!(s->pcrSelect[n / 8] & (1u << (n % 8))))
                                continue;
                        if (v >= values->count || values->digests[v].size != banks[bank].size)
                                return 0;
                        memcpy(snap->value[bank][n], values->digests[v++].buffer, banks[bank].size);
                        got |= 1u << n;
                }
        }
        return v == values->count ? got : 0;
}

/* Reads PCRs @mask of bank @bank: a TPM answers at most 8 digests per call. */
static gboolean read_bank(ESYS_CONTEXT *esys, int bank, guint32 mask, PcrSnapshot *snap,
                          GError **error)
{
        guint32 todo = mask & ~snap->mask[bank];

        while (todo) {
                TPML_PCR_SELECTION want, *sel = NULL;
                TPML_DIGEST *values = NULL;
                guint32 got;
                TSS2_RC rc;

                pcr_selection(banks[bank].alg, todo, &want);
                rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &want,
                                   NULL, &sel, &values);
                if (!tpm_ok(rc, "reading the host's PCRs", error))
                        return FALSE;
                got = take_pcr_values(snap, bank, sel, values) & todo;
                Esys_Free(sel);
                Esys_Free(values);
                if (got == 0) {
                        g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_TPM,
                                    "the host TPM returned no %s PCR values (bank not "
                                    "allocated?)", banks[bank].name);
                        return FALSE;
                }
                snap->mask[bank] |= got;
                todo &= ~got;
        }
        return TRUE;
}

gboolean vrot_sealkey_read_pcrs(ESYS_CONTEXT *esys, const VrotSealkeyPcrs *pcrs,
                                GBytes **ret_values, GError **error)
{
        g_autofree PcrSnapshot *snap = g_new0(PcrSnapshot, 1);
        int bank = bank_index(pcrs->bank);
        GByteArray *out;

        g_return_val_if_fail(esys && bank >= 0 && pcrs->mask && ret_values, FALSE);
        if (!read_bank(esys, bank, pcrs->mask, snap, error))
                return FALSE;
        out = g_byte_array_new();
        for (guint n = 0; n < PCR_MAX; n++)
                if (pcrs->mask & (1u << n))
                        g_byte_array_append(out, snap->value[bank][n], (guint)banks[bank].size);
        *ret_values = g_byte_array_free_to_bytes(out);
        return TRUE;
}

/* ---- policy digests (TPM2 Part 3 23.7 PolicyPCR, 23.16 PolicyAuthorize) -- */

static void put_cc(GChecksum *sum, TPM2_CC cc)
{
        guint8 be[4];

        vrot_put_be32(be, cc);
        g_checksum_update(sum, be, sizeof(be));
}

/* PolicyPCR from a fresh session: H(0^32 || TPM_CC_PolicyPCR || pcrs || H(values)). */
static void policy_pcr_digest(const VrotSealkeyPcrs *pcrs, GBytes *values, TPM2B_DIGEST *ret)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        static const guint8 zero[SHA256_LEN];
        guint8 pcr_digest[SHA256_LEN];
        guint8 sel_buf[sizeof(TPML_PCR_SELECTION)];
        TPML_PCR_SELECTION sel;
        size_t off = 0;
        TSS2_RC rc;

        g_checksum_update(sum, g_bytes_get_data(values, NULL), (gssize)g_bytes_get_size(values));
        sha256(sum, pcr_digest);
        pcr_selection(pcrs->bank, pcrs->mask, &sel);
        rc = Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, sel_buf, sizeof(sel_buf), &off);
        g_assert(rc == TSS2_RC_SUCCESS);

        g_checksum_reset(sum);
        g_checksum_update(sum, zero, sizeof(zero));
        put_cc(sum, TPM2_CC_PolicyPCR);
        g_checksum_update(sum, sel_buf, (gssize)off);
        g_checksum_update(sum, pcr_digest, sizeof(pcr_digest));
        ret->size = SHA256_LEN;
        sha256(sum, ret->buffer);
}

/* PolicyAuthorize: H(H(0^32 || TPM_CC_PolicyAuthorize || keySign) || policyRef). */
static void policy_authorize_digest(const TPM2B_NAME *key_name, TPM2B_DIGEST *ret)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        static const guint8 zero[SHA256_LEN];
        guint8 inner[SHA256_LEN];

        g_checksum_update(sum, zero, sizeof(zero));
        put_cc(sum, TPM2_CC_PolicyAuthorize);
        g_checksum_update(sum, key_name->name, key_name->size);
        sha256(sum, inner);
        g_checksum_reset(sum);
        g_checksum_update(sum, inner, sizeof(inner));
        g_checksum_update(sum, (const guint8 *)VROT_SEALKEY_POLICY_REF, POLICY_REF_LEN);
        ret->size = SHA256_LEN;
        sha256(sum, ret->buffer);
}

/* aHash of VerifySignature: H(approvedPolicy || policyRef), the signed message's digest. */
static void approval_digest(const TPM2B_DIGEST *policy, TPM2B_DIGEST *ret)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

        g_checksum_update(sum, policy->buffer, policy->size);
        g_checksum_update(sum, (const guint8 *)VROT_SEALKEY_POLICY_REF, POLICY_REF_LEN);
        ret->size = SHA256_LEN;
        sha256(sum, ret->buffer);
}

/* ---- operator keys -------------------------------------------------------- */

static gboolean has_private(EVP_PKEY *key)
{
        const char *param = EVP_PKEY_is_a(key, "RSA") ? OSSL_PKEY_PARAM_RSA_D
                                                       : OSSL_PKEY_PARAM_PRIV_KEY;
        BIGNUM *bn = NULL;
        gboolean ok = EVP_PKEY_get_bn_param(key, param, &bn) == 1;

        BN_clear_free(bn);
        ERR_clear_error();
        return ok;
}

EVP_PKEY *vrot_sealkey_key_generate(GError **error)
{
        EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

        if (!key)
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "generating a P-256 key");
        return key;
}

gboolean vrot_sealkey_key_save(EVP_PKEY *key, const char *path, gboolean with_private,
                               GError **error)
{
        g_autoptr(BIO) bio = BIO_new(BIO_s_mem());
        char *data = NULL;
        long len;
        int ok;

        g_return_val_if_fail(key && path, FALSE);
        if (with_private && !has_private(key)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "%s: the key has no private part to save", path);
                return FALSE;
        }
        ok = bio && (with_private
                     ? PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_bio_PUBKEY(bio, key));
        if (!ok) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, path);
                return FALSE;
        }
        /* The memory BIO wipes its buffer when freed (BUF_MEM_free). */
        len = BIO_get_mem_data(bio, &data);
        return write_path(path, data, (gsize)len, with_private ? 0600 : 0644, error);
}

EVP_PKEY *vrot_sealkey_key_load(const char *path, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree char *pem = NULL;
        EVP_PKEY *key = NULL;
        gsize len = 0;

        g_return_val_if_fail(path != NULL, NULL);
        if (!g_file_get_contents(path, &pem, &len, &local)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED,
                            "%s", local->message);
                return NULL;
        }
        if (len <= G_MAXINT) {
                g_autoptr(BIO) priv = BIO_new_mem_buf(pem, (int)len);
                g_autoptr(BIO) pub = BIO_new_mem_buf(pem, (int)len);

                if (priv)
                        key = PEM_read_bio_PrivateKey(priv, NULL, vrot_x509_no_passphrase, NULL);
                if (!key && pub)
                        key = PEM_read_bio_PUBKEY(pub, NULL, vrot_x509_no_passphrase, NULL);
        }
        OPENSSL_cleanse(pem, len);
        ERR_clear_error();
        if (!key)
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "%s: not an unencrypted PEM private or public key", path);
        return key;
}

static gboolean bn_param(EVP_PKEY *key, const char *param, guint8 *out, gsize len,
                         GError **error)
{
        g_autoptr(BIGNUM) bn = NULL;

        if (EVP_PKEY_get_bn_param(key, param, &bn) != 1 || BN_num_bytes(bn) > (int)len ||
            BN_bn2binpad(bn, out, (int)len) != (int)len) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_INVALID, "reading the operator key");
                return FALSE;
        }
        return TRUE;
}

static gboolean ecc_public(EVP_PKEY *key, TPMT_PUBLIC *pub, GError **error)
{
        char group[64] = "";

        if (!EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
                ERR_clear_error();
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "operator key: EC keys must be on curve P-256, not '%s'", group);
                return FALSE;
        }
        pub->type = TPM2_ALG_ECC;
        pub->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        pub->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        pub->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        pub->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        pub->unique.ecc.x.size = 32;
        pub->unique.ecc.y.size = 32;
        return bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, pub->unique.ecc.x.buffer, 32, error) &&
               bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, pub->unique.ecc.y.buffer, 32, error);
}

static gboolean rsa_public(EVP_PKEY *key, TPMT_PUBLIC *pub, GError **error)
{
        int bits = EVP_PKEY_get_bits(key);
        guint8 e[4];

        if (bits != 2048 && bits != 3072 && bits != 4096) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "operator key: RSA keys must have 2048, 3072 or 4096 bits, not %d",
                            bits);
                return FALSE;
        }
        pub->type = TPM2_ALG_RSA;
        pub->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        pub->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        pub->parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)bits;
        if (!bn_param(key, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e), error))
                return FALSE;
        /* The exponent as it is, 65537 included (which the TPM would also
         * accept as 0): the name then equals tpm2_loadexternal's, so the
         * operator procedure of docs/sealing.md works with stock tools. */
        pub->parameters.rsaDetail.exponent = vrot_get_be32(e);
        pub->unique.rsa.size = (UINT16)(bits / 8);
        return bn_param(key, OSSL_PKEY_PARAM_RSA_N, pub->unique.rsa.buffer,
                        pub->unique.rsa.size, error);
}

gboolean vrot_sealkey_key_public(EVP_PKEY *key, TPM2B_PUBLIC *ret_public,
                                 TPM2B_NAME *ret_name, GError **error)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        guint8 buf[sizeof(TPMT_PUBLIC)];
        TPM2B_PUBLIC pub = { 0 };
        TPM2B_NAME name = { 0 };
        size_t off = 0;

        g_return_val_if_fail(key != NULL, FALSE);
        /* Sign-only, no authValue use, no scheme: only VerifySignature needs it. */
        pub.publicArea.nameAlg = TPM2_ALG_SHA256;
        pub.publicArea.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT;
        if (EVP_PKEY_is_a(key, "EC")) {
                if (!ecc_public(key, &pub.publicArea, error))
                        return FALSE;
        } else if (EVP_PKEY_is_a(key, "RSA")) {
                if (!rsa_public(key, &pub.publicArea, error))
                        return FALSE;
        } else {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "operator key: only ECC P-256 and RSA keys are supported");
                return FALSE;
        }
        if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub.publicArea, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                g_assert_not_reached();
        g_checksum_update(sum, buf, (gssize)off);
        vrot_put_be16(name.name, TPM2_ALG_SHA256);
        sha256(sum, name.name + 2);
        name.size = 2 + SHA256_LEN;
        if (ret_public)
                *ret_public = pub;
        if (ret_name)
                *ret_name = name;
        return TRUE;
}

/* ---- signatures ----------------------------------------------------------- */

static GBytes *sign_approval(EVP_PKEY *key, const TPM2B_DIGEST *policy, GError **error)
{
        g_autoptr(EVP_MD_CTX) md = EVP_MD_CTX_new();
        guint8 msg[sizeof(policy->buffer) + POLICY_REF_LEN];
        g_autofree guint8 *sig = NULL;
        size_t sig_len = 0;

        /* The message is approvedPolicy || policyRef, hashed with SHA-256:
         * exactly the aHash that VerifySignature gets (TPM2 Part 3 23.16). */
        memcpy(msg, policy->buffer, policy->size);
        memcpy(msg + policy->size, VROT_SEALKEY_POLICY_REF, POLICY_REF_LEN);
        if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1 ||
            EVP_DigestSign(md, NULL, &sig_len, msg, policy->size + POLICY_REF_LEN) != 1 ||
            sig_len > SIG_MAX_LEN) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "signing the PCR policy");
                return NULL;
        }
        sig = g_malloc(sig_len);
        if (EVP_DigestSign(md, sig, &sig_len, msg, policy->size + POLICY_REF_LEN) != 1) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "signing the PCR policy");
                return NULL;
        }
        return g_bytes_new(sig, sig_len);
}

static gboolean ecdsa_signature(GBytes *der, TPMT_SIGNATURE *ret)
{
        g_autoptr(ECDSA_SIG) sig = NULL;
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(der, &len);
        const guint8 *start = p;
        const BIGNUM *r, *s;

        sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
        /* Strict DER: all bytes consumed and the canonical encoding. */
        if (!sig || (gsize)(p - start) != len || i2d_ECDSA_SIG(sig, NULL) != (int)len)
                return FALSE;
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_num_bytes(r) > 32 || BN_num_bytes(s) > 32)
                return FALSE;
        ret->sigAlg = TPM2_ALG_ECDSA;
        ret->signature.ecdsa.hash = TPM2_ALG_SHA256;
        ret->signature.ecdsa.signatureR.size = 32;
        ret->signature.ecdsa.signatureS.size = 32;
        BN_bn2binpad(r, ret->signature.ecdsa.signatureR.buffer, 32);
        BN_bn2binpad(s, ret->signature.ecdsa.signatureS.buffer, 32);
        return TRUE;
}

/* The authorisation's signature as the TPMT_SIGNATURE VerifySignature takes. */
static gboolean auth_signature(const VrotSealkeyAuth *auth, TPMT_SIGNATURE *ret)
{
        gsize len = 0;
        const guint8 *p = g_bytes_get_data(auth->signature, &len);

        memset(ret, 0, sizeof(*ret));
        if (auth->scheme == TPM2_ALG_ECDSA) {
                ERR_set_mark();
                gboolean ok = ecdsa_signature(auth->signature, ret);
                ERR_pop_to_mark();
                return ok;
        }
        if (len == 0 || len > sizeof(ret->signature.rsassa.sig.buffer))
                return FALSE;
        ret->sigAlg = TPM2_ALG_RSASSA;
        ret->signature.rsassa.hash = TPM2_ALG_SHA256;
        ret->signature.rsassa.sig.size = (UINT16)len;
        memcpy(ret->signature.rsassa.sig.buffer, p, len);
        return TRUE;
}

/* ---- PCR authorisations --------------------------------------------------- */

void vrot_sealkey_auth_free(VrotSealkeyAuth *auth)
{
        if (!auth)
                return;
        g_free(auth->label);
        g_clear_pointer(&auth->values, g_bytes_unref);
        g_clear_pointer(&auth->signature, g_bytes_unref);
        g_free(auth);
}

const TPM2B_DIGEST *vrot_sealkey_auth_get_policy(const VrotSealkeyAuth *auth)
{
        return &auth->policy;
}

const VrotSealkeyPcrs *vrot_sealkey_auth_get_pcrs(const VrotSealkeyAuth *auth)
{
        return &auth->pcrs;
}

VrotSealkeyAuth *vrot_sealkey_authorize(EVP_PKEY *key, const VrotSealkeyPcrs *pcrs,
                                        GBytes *values, GError **error)
{
        g_autoptr(VrotSealkeyAuth) auth = g_new0(VrotSealkeyAuth, 1);

        g_return_val_if_fail(key && pcrs && values, NULL);
        if (bank_index(pcrs->bank) < 0 || pcrs->mask == 0 || pcrs->mask >> PCR_MAX ||
            g_bytes_get_size(values) != pcrs_values_len(pcrs)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "PCR values: %zu bytes do not fit the selection",
                            g_bytes_get_size(values));
                return NULL;
        }
        if (!has_private(key)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "authorising PCR values needs the operator's private key");
                return NULL;
        }
        if (!vrot_sealkey_key_public(key, NULL, &auth->signer, error))
                return NULL;
        auth->pcrs = *pcrs;
        auth->values = g_bytes_ref(values);
        auth->scheme = EVP_PKEY_is_a(key, "RSA") ? TPM2_ALG_RSASSA : TPM2_ALG_ECDSA;
        policy_pcr_digest(pcrs, values, &auth->policy);
        auth->signature = sign_approval(key, &auth->policy, error);
        if (!auth->signature)
                return NULL;
        return g_steal_pointer(&auth);
}

VrotSealkeyAuth *vrot_sealkey_authorize_current(ESYS_CONTEXT *esys, EVP_PKEY *key,
                                                const VrotSealkeyPcrs *pcrs,
                                                GError **error)
{
        g_autoptr(GBytes) values = NULL;

        if (!vrot_sealkey_read_pcrs(esys, pcrs, &values, error))
                return NULL;
        return vrot_sealkey_authorize(key, pcrs, values, error);
}

char *vrot_sealkey_auth_format(const VrotSealkeyAuth *auth)
{
        GString *s = g_string_new(AUTH_MAGIC_LINE "\n");
        g_autofree char *spec = vrot_sealkey_pcrs_format(&auth->pcrs);
        g_autofree char *policy = hex_encode(auth->policy.buffer, auth->policy.size);
        g_autofree char *signer = hex_encode(auth->signer.name, auth->signer.size);
        gsize sig_len = 0;
        const guint8 *sig = g_bytes_get_data(auth->signature, &sig_len);
        g_autofree char *sig_hex = hex_encode(sig, sig_len);
        const guint8 *v = g_bytes_get_data(auth->values, NULL);
        gsize size = banks[bank_index(auth->pcrs.bank)].size;

        g_string_append_printf(s, "pcrs %s\n", spec);
        for (guint n = 0; n < PCR_MAX; n++) {
                if (!(auth->pcrs.mask & (1u << n)))
                        continue;
                g_autofree char *hex = hex_encode(v, size);
                g_string_append_printf(s, "pcr %u %s\n", n, hex);
                v += size;
        }
        g_string_append_printf(s, "policy %s\nsigner %s\nsignature %s %s\n", policy, signer,
                               auth->scheme == TPM2_ALG_RSASSA ? "rsassa-sha256" : "ecdsa-sha256",
                               sig_hex);
        return g_string_free(s, FALSE);
}

/* A cursor over the lines of an authorisation file. */
typedef struct {
        const char *p, *end;
        guint lineno;
        char *line;      /* current line, NUL-terminated copy */
} Lines;

static gboolean next_line(Lines *l)
{
        const char *nl = memchr(l->p, '\n', (gsize)(l->end - l->p));

        g_clear_pointer(&l->line, g_free);
        if (!nl)
                return FALSE;
        l->line = g_strndup(l->p, (gsize)(nl - l->p));
        l->lineno++;
        l->p = nl + 1;
        /* The caller refused NUL bytes in the whole buffer, so the copy is
         * the whole line; CR is refused by expect(). */
        return TRUE;
}

/* Next line must be "@key <value>"; returns (transfer none) the value or NULL. */
static const char *expect(Lines *l, const char *key)
{
        gsize klen = strlen(key);

        if (!next_line(l) || strncmp(l->line, key, klen) != 0 || l->line[klen] != ' ' ||
            strchr(l->line, '\r'))
                return NULL;
        return l->line + klen + 1;
}

static gboolean expect_hex(Lines *l, const char *key, guint8 *out, gsize max, gsize want,
                           gsize *ret_len)
{
        const char *hex = expect(l, key);
        gsize len = 0;

        if (!hex || !hex_decode(hex, strlen(hex), out, max, &len) || (want && len != want))
                return FALSE;
        if (ret_len)
                *ret_len = len;
        return TRUE;
}

static gboolean parse_values(Lines *l, VrotSealkeyAuth *auth)
{
        gsize size = banks[bank_index(auth->pcrs.bank)].size;
        GByteArray *values = g_byte_array_new();
        guint8 v[TPM2_SHA512_DIGEST_SIZE];

        for (guint n = 0; n < PCR_MAX; n++) {
                g_autofree char *key = g_strdup_printf("pcr %u", n);

                if (!(auth->pcrs.mask & (1u << n)))
                        continue;
                if (!expect_hex(l, key, v, sizeof(v), size, NULL)) {
                        g_byte_array_unref(values);
                        return FALSE;
                }
                g_byte_array_append(values, v, (guint)size);
        }
        auth->values = g_byte_array_free_to_bytes(values);
        return TRUE;
}

static gboolean parse_signature(Lines *l, VrotSealkeyAuth *auth)
{
        const char *rest = expect(l, "signature");
        guint8 sig[SIG_MAX_LEN];
        const char *hex;
        gsize len = 0;

        if (!rest)
                return FALSE;
        if (g_str_has_prefix(rest, "ecdsa-sha256 "))
                auth->scheme = TPM2_ALG_ECDSA;
        else if (g_str_has_prefix(rest, "rsassa-sha256 "))
                auth->scheme = TPM2_ALG_RSASSA;
        else
                return FALSE;
        hex = strchr(rest, ' ') + 1;
        if (!hex_decode(hex, strlen(hex), sig, sizeof(sig), &len))
                return FALSE;
        auth->signature = g_bytes_new(sig, len);
        return TRUE;
}

/* Parses the lines; FALSE means a syntax error at l->lineno. */
static gboolean parse_auth_lines(Lines *l, VrotSealkeyAuth *auth)
{
        g_autofree char *canonical = NULL;
        TPMT_SIGNATURE sig;
        const char *spec;
        gsize len = 0;

        if (!next_line(l) || strcmp(l->line, AUTH_MAGIC_LINE) != 0)
                return FALSE;
        spec = expect(l, "pcrs");
        if (!spec || !vrot_sealkey_pcrs_parse(spec, &auth->pcrs, NULL))
                return FALSE;
        canonical = vrot_sealkey_pcrs_format(&auth->pcrs);
        if (strcmp(canonical, spec) != 0 || !parse_values(l, auth))
                return FALSE;
        if (!expect_hex(l, "policy", auth->policy.buffer, sizeof(auth->policy.buffer),
                        SHA256_LEN, &len))
                return FALSE;
        auth->policy.size = (UINT16)len;
        if (!expect_hex(l, "signer", auth->signer.name, sizeof(auth->signer.name),
                        2 + SHA256_LEN, &len) ||
            vrot_get_be16(auth->signer.name) != TPM2_ALG_SHA256)
                return FALSE;
        auth->signer.size = (UINT16)len;
        if (!parse_signature(l, auth) || !auth_signature(auth, &sig))
                return FALSE;
        l->lineno++;
        return l->p == l->end;   /* nothing after the signature line */
}

VrotSealkeyAuth *vrot_sealkey_auth_parse(const char *buf, gsize len, const char *label,
                                         GError **error)
{
        g_autoptr(VrotSealkeyAuth) auth = g_new0(VrotSealkeyAuth, 1);
        Lines l = { buf, buf + len, 0, NULL };
        TPM2B_DIGEST expected;
        gboolean ok;

        g_return_val_if_fail(buf || len == 0, NULL);
        auth->label = g_strdup(label);
        ok = len <= AUTH_MAX_FILE && !memchr(buf, '\0', len) && parse_auth_lines(&l, auth);
        g_free(l.line);
        if (!ok) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "%s: not a PCR authorisation (line %u)", label_of(auth),
                            MAX(l.lineno, 1));
                return NULL;
        }
        policy_pcr_digest(&auth->pcrs, auth->values, &expected);
        if (!digest_eq(&expected, &auth->policy)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_TAMPERED,
                            "%s: the policy digest is not the PolicyPCR digest of the PCR "
                            "values it lists (edited after signing?)", label_of(auth));
                return NULL;
        }
        return g_steal_pointer(&auth);
}

VrotSealkeyAuth *vrot_sealkey_auth_load(const char *path, GError **error)
{
        g_autoptr(GError) local = NULL;
        g_autofree char *buf = NULL;
        g_autofree char *label = NULL;
        gsize len = 0;

        g_return_val_if_fail(path != NULL, NULL);
        if (!g_file_get_contents(path, &buf, &len, &local)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED,
                            "%s", local->message);
                return NULL;
        }
        label = g_path_get_basename(path);
        return vrot_sealkey_auth_parse(buf, len, label, error);
}

gboolean vrot_sealkey_auth_save(const VrotSealkeyAuth *auth, const char *path,
                                GError **error)
{
        g_autofree char *text = vrot_sealkey_auth_format(auth);

        return write_path(path, text, strlen(text), 0644, error);
}

static gint cmp_paths(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

gboolean vrot_sealkey_auth_load_dir(const char *dir, GPtrArray **ret_auths, GError **error)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) auths = NULL;
        g_autoptr(GError) local = NULL;
        g_autoptr(GDir) d = g_dir_open(dir, 0, &local);
        const char *name;

        g_return_val_if_fail(dir && ret_auths, FALSE);
        if (!d) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED,
                            "%s", local->message);
                return FALSE;
        }
        while ((name = g_dir_read_name(d)))
                if (g_str_has_suffix(name, VROT_SEALKEY_AUTH_SUFFIX) && name[0] != '.')
                        g_ptr_array_add(names, g_build_filename(dir, name, NULL));
        g_ptr_array_sort(names, cmp_paths);
        auths = g_ptr_array_new_with_free_func((GDestroyNotify)vrot_sealkey_auth_free);
        for (guint i = 0; i < names->len; i++) {
                const char *path = names->pdata[i];
                VrotSealkeyAuth *auth;

                if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
                        continue;
                auth = vrot_sealkey_auth_load(path, error);
                if (!auth)
                        return FALSE;
                g_ptr_array_add(auths, auth);
        }
        *ret_auths = g_steal_pointer(&auths);
        return TRUE;
}

/* ---- the sealed object file ------------------------------------------------ */

static GBytes *sealed_serialize(const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv)
{
        guint8 buf[8 + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
        size_t off = 8;

        memcpy(buf, SEALED_MAGIC, 4);
        vrot_put_be16(buf + 4, FORMAT_VERSION);
        vrot_put_be16(buf + 6, 0);
        if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS ||
            Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
                g_assert_not_reached();
        return g_bytes_new(buf, off);
}

/* No userWithAuth: only the policy opens it.  noDA: a refused unseal must
 * never count towards the host TPM's dictionary-attack lockout. */
#define SEALED_ATTRIBUTES (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
                           TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_NODA)

/* Exactly what vrot_sealkey_create() makes, so that nothing with a weaker
 * policy (userWithAuth, say) is ever taken for the sealed master key. */
static gboolean sealed_public_ok(const TPMT_PUBLIC *p)
{
        return p->type == TPM2_ALG_KEYEDHASH && p->nameAlg == TPM2_ALG_SHA256 &&
               p->objectAttributes == SEALED_ATTRIBUTES &&
               p->parameters.keyedHashDetail.scheme.scheme == TPM2_ALG_NULL &&
               p->authPolicy.size == SHA256_LEN;
}

gboolean vrot_sealkey_sealed_parse(const guint8 *buf, gsize len, TPM2B_PUBLIC *ret_public,
                                   TPM2B_PRIVATE *ret_private, GError **error)
{
        TPM2B_PUBLIC pub = { 0 };
        TPM2B_PRIVATE priv = { 0 };
        g_autoptr(GBytes) again = NULL;
        size_t off = 8;

        g_return_val_if_fail(buf || len == 0, FALSE);
        if (len < 8 || memcmp(buf, SEALED_MAGIC, 4) != 0 ||
            vrot_get_be16(buf + 4) != FORMAT_VERSION || vrot_get_be16(buf + 6) != 0 ||
            Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, len, &off, &pub) != TSS2_RC_SUCCESS ||
            Tss2_MU_TPM2B_PRIVATE_Unmarshal(buf, len, &off, &priv) != TSS2_RC_SUCCESS ||
            off != len || !sealed_public_ok(&pub.publicArea)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "not a vrot sealed master key (format %d)", FORMAT_VERSION);
                return FALSE;
        }
        /* Only the canonical encoding: re-marshalling gives the same bytes. */
        again = sealed_serialize(&pub, &priv);
        if (g_bytes_get_size(again) != len || memcmp(g_bytes_get_data(again, NULL), buf, len)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "sealed master key: non-canonical encoding");
                return FALSE;
        }
        if (ret_public)
                *ret_public = pub;
        if (ret_private)
                *ret_private = priv;
        return TRUE;
}

/* ---- recovery copy -------------------------------------------------------- */

static gboolean key_fingerprint(EVP_PKEY *key, guint8 out[SHA256_LEN], GError **error)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(key, &der);

        if (len <= 0) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "encoding the recovery key");
                return FALSE;
        }
        g_checksum_update(sum, der, len);
        OPENSSL_free(der);
        sha256(sum, out);
        return TRUE;
}

static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *key, gboolean decrypt)
{
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);

        if (!ctx || (decrypt ? EVP_PKEY_decrypt_init(ctx) : EVP_PKEY_encrypt_init(ctx)) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", NULL) != 1) {
                EVP_PKEY_CTX_free(ctx);
                return NULL;
        }
        return ctx;
}

static gboolean recovery_key_ok(EVP_PKEY *key, GError **error)
{
        if (!EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_get_bits(key) < 2048) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "the recovery key must be an RSA key of at least 2048 bits");
                return FALSE;
        }
        return TRUE;
}

static GBytes *recovery_wrap(EVP_PKEY *key, const VrotSecret *master, GError **error)
{
        g_autoptr(EVP_PKEY_CTX) ctx = NULL;
        guint8 buf[RECOVERY_HEADER_LEN + 1024];
        size_t ct_len = sizeof(buf) - RECOVERY_HEADER_LEN;

        if (!recovery_key_ok(key, error))
                return NULL;
        memcpy(buf, RECOVERY_MAGIC, 4);
        vrot_put_be16(buf + 4, FORMAT_VERSION);
        vrot_put_be16(buf + 6, RECOVERY_ALG_RSA_OAEP_SHA256);
        if (!key_fingerprint(key, buf + 8, error))
                return NULL;
        ctx = oaep_ctx(key, FALSE);
        if (!ctx || EVP_PKEY_encrypt(ctx, buf + RECOVERY_HEADER_LEN, &ct_len,
                                     vrot_secret_data(master),
                                     vrot_secret_len(master)) != 1) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "wrapping the recovery copy");
                return NULL;
        }
        vrot_put_be16(buf + 40, (guint16)ct_len);
        return g_bytes_new(buf, RECOVERY_HEADER_LEN + ct_len);
}

/* Decrypts into locked memory; *@ret_key must come out exactly 32 bytes. */
static gboolean recovery_unwrap(EVP_PKEY *key, const guint8 *ct, gsize ct_len,
                                VrotSecret **ret_key, GError **error)
{
        g_autoptr(EVP_PKEY_CTX) ctx = oaep_ctx(key, TRUE);
        g_autoptr(VrotSecret) out = NULL;
        g_autoptr(VrotSecret) master = NULL;
        VrotError verr = { 0 };
        size_t len = 0;

        if (!ctx || EVP_PKEY_decrypt(ctx, NULL, &len, ct, ct_len) != 1) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "recovery key");
                return FALSE;
        }
        out = vrot_secret_new(len, &verr);
        master = vrot_secret_new(VROT_SEALKEY_KEY_LEN, &verr);
        if (!out || !master) {
                set_vrot_error(error, &verr);
                return FALSE;
        }
        if (EVP_PKEY_decrypt(ctx, vrot_secret_data(out), &len, ct, ct_len) != 1 ||
            len != VROT_SEALKEY_KEY_LEN) {
                ERR_clear_error();
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_TAMPERED,
                            "the recovery copy does not decrypt (damaged or tampered)");
                return FALSE;
        }
        memcpy(vrot_secret_data(master), vrot_secret_data(out), VROT_SEALKEY_KEY_LEN);
        *ret_key = g_steal_pointer(&master);
        return TRUE;
}

gboolean vrot_sealkey_recover(GBytes *recovery, EVP_PKEY *recovery_private,
                              VrotSecret **ret_key, GError **error)
{
        guint8 fp[SHA256_LEN];
        gsize len = 0;
        const guint8 *buf;

        g_return_val_if_fail(recovery && recovery_private && ret_key, FALSE);
        buf = g_bytes_get_data(recovery, &len);
        if (len < RECOVERY_HEADER_LEN || memcmp(buf, RECOVERY_MAGIC, 4) != 0 ||
            vrot_get_be16(buf + 4) != FORMAT_VERSION ||
            vrot_get_be16(buf + 6) != RECOVERY_ALG_RSA_OAEP_SHA256 ||
            vrot_get_be16(buf + 40) != len - RECOVERY_HEADER_LEN || len == RECOVERY_HEADER_LEN) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "not a vrot master key recovery copy (format %d)", FORMAT_VERSION);
                return FALSE;
        }
        if (!recovery_key_ok(recovery_private, error))
                return FALSE;
        if (!has_private(recovery_private)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "recovery needs the operator's private recovery key");
                return FALSE;
        }
        if (!key_fingerprint(recovery_private, fp, error))
                return FALSE;
        if (memcmp(fp, buf + 8, SHA256_LEN) != 0) {
                g_autofree char *want = hex_encode(buf + 8, SHA256_LEN);
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
                            "the recovery copy is wrapped to another key (SHA-256 of its "
                            "public key: %s)", want);
                return FALSE;
        }
        return recovery_unwrap(recovery_private, buf + RECOVERY_HEADER_LEN,
                               len - RECOVERY_HEADER_LEN, ret_key, error);
}

/* ---- host TPM: handles and sessions --------------------------------------- */

/* A loaded object or session, flushed when it goes out of scope. */
typedef struct {
        ESYS_CONTEXT *esys;
        ESYS_TR tr;
} TpmHandle;

static void tpm_handle_clear(TpmHandle *h)
{
        if (h->tr != ESYS_TR_NONE)
                (void)Esys_FlushContext(h->esys, h->tr);
        h->tr = ESYS_TR_NONE;
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TpmHandle, tpm_handle_clear)

/* A session that ended with its command (continueSession clear): the TPM
 * has flushed it already, only ESYS's record of it is left to drop. */
static void tpm_handle_ended(TpmHandle *h)
{
        (void)Esys_TR_Close(h->esys, &h->tr);
        h->tr = ESYS_TR_NONE;
}

/*
 * A session salted with @parent (so its key is unknown to anyone watching
 * the bus) that encrypts the first command parameter (@attrs
 * TPMA_SESSION_DECRYPT) or the first response parameter (ENCRYPT) with
 * AES-128-CFB, and ends with the command it is used in.
 */
static gboolean start_session(ESYS_CONTEXT *esys, ESYS_TR parent, TPM2_SE type,
                              TPMA_SESSION attrs, TpmHandle *h, GError **error)
{
        const TPMT_SYM_DEF aes = {
                .algorithm = TPM2_ALG_AES,
                .keyBits.aes = 128,
                .mode.aes = TPM2_ALG_CFB,
        };
        TSS2_RC rc;

        rc = Esys_StartAuthSession(esys, parent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, NULL, type, &aes, TPM2_ALG_SHA256, &h->tr);
        if (!tpm_ok(rc, "starting a salted session", error))
                return FALSE;
        rc = Esys_TRSess_SetAttributes(esys, h->tr, attrs,
                                       attrs | TPMA_SESSION_CONTINUESESSION);
        return tpm_ok(rc, "setting session attributes", error);
}

/* ---- create ------------------------------------------------------------------ */

static void sealed_template(const TPM2B_NAME *key_name, TPM2B_PUBLIC *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->publicArea.type = TPM2_ALG_KEYEDHASH;
        ret->publicArea.nameAlg = TPM2_ALG_SHA256;
        ret->publicArea.objectAttributes = SEALED_ATTRIBUTES;
        ret->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
        policy_authorize_digest(key_name, &ret->publicArea.authPolicy);
}

/* Seals @master under @parent; *@ret_sealed is the file contents. */
static gboolean seal_master(ESYS_CONTEXT *esys, ESYS_TR parent, const TPM2B_NAME *key_name,
                            const VrotSecret *master, GBytes **ret_sealed, GError **error)
{
        g_auto(TpmHandle) session = { esys, ESYS_TR_NONE };
        g_autoptr(VrotSecret) sens_mem = NULL;
        TPM2B_SENSITIVE_CREATE *sens;
        const TPM2B_DATA outside = { 0 };
        const TPML_PCR_SELECTION no_pcrs = { 0 };
        TPM2B_PUBLIC tmpl;
        TPM2B_PRIVATE *priv = NULL;
        TPM2B_PUBLIC *pub = NULL;
        VrotError verr = { 0 };
        TSS2_RC rc;

        /* The key travels in inSensitive: keep that copy in locked memory. */
        sens_mem = vrot_secret_new(sizeof(*sens), &verr);
        if (!sens_mem) {
                set_vrot_error(error, &verr);
                return FALSE;
        }
        sens = (TPM2B_SENSITIVE_CREATE *)vrot_secret_data(sens_mem);
        sens->sensitive.data.size = VROT_SEALKEY_KEY_LEN;
        memcpy(sens->sensitive.data.buffer, vrot_secret_data(master), VROT_SEALKEY_KEY_LEN);
        sealed_template(key_name, &tmpl);

        if (!start_session(esys, parent, TPM2_SE_HMAC, TPMA_SESSION_DECRYPT, &session, error))
                return FALSE;
        rc = Esys_Create(esys, parent, session.tr, ESYS_TR_NONE, ESYS_TR_NONE, sens, &tmpl,
                         &outside, &no_pcrs, &priv, &pub, NULL, NULL, NULL);
        if (!tpm_ok(rc, "sealing the master key in the host TPM", error))
                return FALSE;
        tpm_handle_ended(&session);
        *ret_sealed = sealed_serialize(pub, priv);
        Esys_Free(priv);
        Esys_Free(pub);
        return TRUE;
}

gboolean vrot_sealkey_reseal(ESYS_CONTEXT *esys, ESYS_TR parent, EVP_PKEY *policy_key,
                             EVP_PKEY *recovery_key, const VrotSecret *master,
                             GBytes **ret_sealed, GBytes **ret_recovery, GError **error)
{
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GBytes) recovery = NULL;
        TPM2B_NAME key_name;

        g_return_val_if_fail(esys && policy_key && master && ret_sealed, FALSE);
        if (vrot_secret_len(master) != VROT_SEALKEY_KEY_LEN) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_INVALID,
                            "a state master key has %d bytes, not %zu", VROT_SEALKEY_KEY_LEN,
                            vrot_secret_len(master));
                return FALSE;
        }
        if (!vrot_sealkey_key_public(policy_key, NULL, &key_name, error))
                return FALSE;
        if (recovery_key && !(recovery = recovery_wrap(recovery_key, master, error)))
                return FALSE;
        if (!seal_master(esys, parent, &key_name, master, &sealed, error))
                return FALSE;
        *ret_sealed = g_steal_pointer(&sealed);
        if (ret_recovery)
                *ret_recovery = g_steal_pointer(&recovery);
        return TRUE;
}

gboolean vrot_sealkey_create(ESYS_CONTEXT *esys, ESYS_TR parent, EVP_PKEY *policy_key,
                             EVP_PKEY *recovery_key, GBytes **ret_sealed,
                             GBytes **ret_recovery, VrotSecret **ret_key,
                             GError **error)
{
        g_autoptr(VrotSecret) master = NULL;
        VrotError verr = { 0 };

        g_return_val_if_fail(esys && policy_key && ret_sealed, FALSE);
        master = vrot_secret_new(VROT_SEALKEY_KEY_LEN, &verr);
        if (!master) {
                set_vrot_error(error, &verr);
                return FALSE;
        }
        if (RAND_priv_bytes(vrot_secret_data(master), VROT_SEALKEY_KEY_LEN) != 1) {
                set_ossl_error(error, VROT_SEALKEY_ERROR_FAILED, "drawing the master key");
                return FALSE;
        }
        if (!vrot_sealkey_reseal(esys, parent, policy_key, recovery_key, master, ret_sealed,
                                 ret_recovery, error))
                return FALSE;
        if (ret_key)
                *ret_key = g_steal_pointer(&master);
        return TRUE;
}

/* ---- unseal ------------------------------------------------------------------ */

/* Why @auth cannot be used with the host's PCRs, or NULL if it can. */
static char *auth_mismatch(const VrotSealkeyAuth *auth, const TPM2B_NAME *trusted,
                           const PcrSnapshot *snap, gboolean *ret_wrong_key)
{
        int bank = bank_index(auth->pcrs.bank);
        gsize size = banks[bank].size;
        const guint8 *v = g_bytes_get_data(auth->values, NULL);

        if (!name_eq(&auth->signer, trusted)) {
                g_autofree char *by = hex_encode(auth->signer.name, auth->signer.size);
                *ret_wrong_key = TRUE;
                return g_strdup_printf("signed by operator key %s, not the trusted one", by);
        }
        for (guint n = 0; n < PCR_MAX; n++) {
                if (!(auth->pcrs.mask & (1u << n)))
                        continue;
                if (memcmp(snap->value[bank][n], v, size) != 0) {
                        g_autofree char *is = hex_encode(snap->value[bank][n], size);
                        g_autofree char *want = hex_encode(v, size);
                        return g_strdup_printf("%s PCR %u is %s, authorised %s",
                                               banks[bank].name, n, is, want);
                }
                v += size;
        }
        return NULL;
}

/*
 * Reads the PCRs every authorisation needs (one PCR_Read per bank and 8
 * PCRs) and returns (transfer none) the first authorisation that is signed
 * by @trusted and matches them.  The error lists why each one does not.
 */
static const VrotSealkeyAuth *pick_auth(ESYS_CONTEXT *esys, GPtrArray *auths,
                                        const TPM2B_NAME *trusted, GError **error)
{
        g_autofree PcrSnapshot *snap = g_new0(PcrSnapshot, 1);
        guint32 need[G_N_ELEMENTS(banks)] = { 0 };
        g_autoptr(GString) why = g_string_new(NULL);
        gboolean pcr_mismatch = FALSE;

        for (guint i = 0; i < auths->len; i++) {
                const VrotSealkeyAuth *a = auths->pdata[i];
                need[bank_index(a->pcrs.bank)] |= a->pcrs.mask;
        }
        for (gsize b = 0; b < G_N_ELEMENTS(banks); b++)
                if (need[b] && !read_bank(esys, (int)b, need[b], snap, error))
                        return NULL;
        for (guint i = 0; i < auths->len; i++) {
                const VrotSealkeyAuth *a = auths->pdata[i];
                g_autofree char *policy = hex_encode(a->policy.buffer, a->policy.size);
                gboolean wrong_key = FALSE;
                g_autofree char *reason = auth_mismatch(a, trusted, snap, &wrong_key);

                if (!reason)
                        return a;
                pcr_mismatch |= !wrong_key;
                g_string_append_printf(why, "%s%s (policy %s): %s", why->len ? "; " : "",
                                       label_of(a), policy, reason);
        }
        g_set_error(error, VROT_SEALKEY_ERROR,
                    pcr_mismatch || auths->len == 0 ? VROT_SEALKEY_ERROR_PCR_MISMATCH
                                                    : VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
                    "the host's PCRs match no authorised PCR policy of the state master "
                    "key: %s", auths->len ? why->str : "no authorisation given");
        return NULL;
}

/* LoadExternal + VerifySignature: the ticket PolicyAuthorize needs. */
static gboolean verify_auth(ESYS_CONTEXT *esys, const TPM2B_PUBLIC *key_pub,
                            const VrotSealkeyAuth *auth, TPMT_TK_VERIFIED **ret_ticket,
                            GError **error)
{
        g_auto(TpmHandle) key = { esys, ESYS_TR_NONE };
        TPMT_SIGNATURE sig;
        TPM2B_DIGEST ahash;
        TSS2_RC rc;

        if (!auth_signature(auth, &sig))
                g_assert_not_reached();   /* checked by vrot_sealkey_auth_parse() */
        approval_digest(&auth->policy, &ahash);
        rc = Esys_LoadExternal(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, key_pub,
                               ESYS_TR_RH_OWNER, &key.tr);
        if (!tpm_ok(rc, "loading the operator policy key", error))
                return FALSE;
        rc = Esys_VerifySignature(esys, key.tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &ahash, &sig, ret_ticket);
        if (!tpm_ok(rc, "verifying the signature", error)) {
                g_prefix_error(error, "%s: ", label_of(auth));
                return FALSE;
        }
        return TRUE;
}

/* PolicyPCR + PolicyAuthorize in a fresh salted policy session. */
static gboolean run_policy(ESYS_CONTEXT *esys, ESYS_TR parent, const VrotSealkeyAuth *auth,
                           const TPM2B_NAME *key_name, const TPMT_TK_VERIFIED *ticket,
                           TpmHandle *session, GError **error)
{
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        const TPM2B_NONCE ref = { .size = POLICY_REF_LEN,
                                  .buffer = VROT_SEALKEY_POLICY_REF };
        TPML_PCR_SELECTION sel;
        TPM2B_DIGEST pcr_digest = { .size = SHA256_LEN };
        TSS2_RC rc;

        if (!start_session(esys, parent, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT, session, error))
                return FALSE;
        g_checksum_update(sum, g_bytes_get_data(auth->values, NULL),
                          (gssize)g_bytes_get_size(auth->values));
        sha256(sum, pcr_digest.buffer);
        pcr_selection(auth->pcrs.bank, auth->pcrs.mask, &sel);
        rc = Esys_PolicyPCR(esys, session->tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                            &pcr_digest, &sel);
        if (!tpm_ok(rc, "PolicyPCR (did the PCRs change since they were read?)", error) ||
            !tpm_ok(Esys_PolicyAuthorize(esys, session->tr, ESYS_TR_NONE, ESYS_TR_NONE,
                                         ESYS_TR_NONE, &auth->policy, &ref, key_name, ticket),
                    "PolicyAuthorize", error)) {
                g_prefix_error(error, "%s: ", label_of(auth));
                return FALSE;
        }
        return TRUE;
}

/* Unseal through @session, into locked memory. */
static gboolean unseal_object(ESYS_CONTEXT *esys, ESYS_TR object, TpmHandle *session,
                              VrotSecret **ret_key, GError **error)
{
        g_autoptr(VrotSecret) key = NULL;
        TPM2B_SENSITIVE_DATA *out = NULL;
        VrotError verr = { 0 };
        gboolean size_ok;
        TSS2_RC rc;

        rc = Esys_Unseal(esys, object, session->tr, ESYS_TR_NONE, ESYS_TR_NONE, &out);
        if (!tpm_ok(rc, "unsealing the master key", error))
                return FALSE;
        tpm_handle_ended(session);
        size_ok = out->size == VROT_SEALKEY_KEY_LEN;
        key = vrot_secret_new(VROT_SEALKEY_KEY_LEN, &verr);
        if (key && size_ok)
                memcpy(vrot_secret_data(key), out->buffer, VROT_SEALKEY_KEY_LEN);
        OPENSSL_cleanse(out, sizeof(*out));
        Esys_Free(out);
        if (!key) {
                set_vrot_error(error, &verr);
                return FALSE;
        }
        if (!size_ok) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_TAMPERED,
                            "the sealed object holds no %d-byte master key",
                            VROT_SEALKEY_KEY_LEN);
                return FALSE;
        }
        *ret_key = g_steal_pointer(&key);
        return TRUE;
}

static gboolean unseal_with(ESYS_CONTEXT *esys, ESYS_TR parent, const TPM2B_PUBLIC *obj_pub,
                            const TPM2B_PRIVATE *obj_priv, const TPM2B_PUBLIC *key_pub,
                            const TPM2B_NAME *key_name, const VrotSealkeyAuth *auth,
                            VrotSecret **ret_key, GError **error)
{
        g_auto(TpmHandle) object = { esys, ESYS_TR_NONE };
        g_auto(TpmHandle) session = { esys, ESYS_TR_NONE };
        TPMT_TK_VERIFIED *ticket = NULL;
        gboolean ok;
        TSS2_RC rc;

        rc = Esys_Load(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, obj_priv,
                       obj_pub, &object.tr);
        if (!tpm_ok(rc, "loading the sealed master key (tampered, or sealed by another "
                    "TPM or under another parent?)", error))
                return FALSE;
        if (!verify_auth(esys, key_pub, auth, &ticket, error))
                return FALSE;
        ok = run_policy(esys, parent, auth, key_name, ticket, &session, error) &&
             unseal_object(esys, object.tr, &session, ret_key, error);
        Esys_Free(ticket);
        return ok;
}

gboolean vrot_sealkey_unseal(ESYS_CONTEXT *esys, ESYS_TR parent, GBytes *sealed,
                             EVP_PKEY *policy_key, GPtrArray *auths,
                             VrotSecret **ret_key, GError **error)
{
        TPM2B_PUBLIC obj_pub, key_pub;
        TPM2B_PRIVATE obj_priv;
        TPM2B_NAME key_name;
        TPM2B_DIGEST trusts;
        const VrotSealkeyAuth *auth;
        gsize len = 0;
        const guint8 *buf;

        g_return_val_if_fail(esys && sealed && policy_key && auths && ret_key, FALSE);
        buf = g_bytes_get_data(sealed, &len);
        if (!vrot_sealkey_sealed_parse(buf, len, &obj_pub, &obj_priv, error))
                return FALSE;
        if (!vrot_sealkey_key_public(policy_key, &key_pub, &key_name, error))
                return FALSE;
        policy_authorize_digest(&key_name, &trusts);
        if (!digest_eq(&trusts, &obj_pub.publicArea.authPolicy)) {
                g_autofree char *name = hex_encode(key_name.name, key_name.size);
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_UNTRUSTED_KEY,
                            "the sealed master key does not trust operator key %s", name);
                return FALSE;
        }
        auth = pick_auth(esys, auths, &key_name, error);
        if (!auth)
                return FALSE;
        return unseal_with(esys, parent, &obj_pub, &obj_priv, &key_pub, &key_name, auth,
                           ret_key, error);
}

/* ---- the sealkey directory --------------------------------------------------- */

gboolean vrot_sealkey_provision(ESYS_CONTEXT *esys, ESYS_TR parent, const char *dir,
                                const VrotSealkeyPcrs *pcrs, EVP_PKEY *policy_key,
                                EVP_PKEY *recovery_key, VrotSecret **ret_key,
                                GError **error)
{
        g_autofree char *sealed_path = NULL;
        g_autofree char *auth_path = NULL;
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GBytes) recovery = NULL;
        g_autoptr(VrotSecret) master = NULL;
        g_autoptr(VrotSealkeyAuth) auth = NULL;

        g_return_val_if_fail(esys && dir && pcrs && policy_key && ret_key, FALSE);
        sealed_path = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);
        if (g_file_test(sealed_path, G_FILE_TEST_EXISTS)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_EXISTS,
                            "%s exists: the host's master key is already sealed", sealed_path);
                return FALSE;
        }
        if (!vrot_sealkey_create(esys, parent, policy_key, recovery_key, &sealed, &recovery,
                                 &master, error))
                return FALSE;
        if (recovery && !write_in_dir(dir, VROT_SEALKEY_RECOVERY_FILE,
                                      g_bytes_get_data(recovery, NULL),
                                      g_bytes_get_size(recovery), 0600, error))
                return FALSE;
        if (has_private(policy_key)) {
                auth = vrot_sealkey_authorize_current(esys, policy_key, pcrs, error);
                auth_path = g_build_filename(dir, VROT_SEALKEY_INITIAL_AUTH, NULL);
                if (!auth || !vrot_sealkey_auth_save(auth, auth_path, error))
                        return FALSE;
        }
        if (!write_in_dir(dir, VROT_SEALKEY_SEALED_FILE, g_bytes_get_data(sealed, NULL),
                          g_bytes_get_size(sealed), 0600, error))
                return FALSE;
        *ret_key = g_steal_pointer(&master);
        return TRUE;
}

gboolean vrot_sealkey_open(ESYS_CONTEXT *esys, ESYS_TR parent, const char *dir,
                           EVP_PKEY *policy_key, VrotSecret **ret_key, GError **error)
{
        g_autofree char *path = NULL;
        g_autofree char *buf = NULL;
        g_autoptr(GPtrArray) auths = NULL;
        g_autoptr(GBytes) sealed = NULL;
        g_autoptr(GError) local = NULL;
        gsize len = 0;

        g_return_val_if_fail(esys && dir && policy_key && ret_key, FALSE);
        path = g_build_filename(dir, VROT_SEALKEY_SEALED_FILE, NULL);
        if (!g_file_get_contents(path, &buf, &len, &local)) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_FAILED,
                            "%s", local->message);
                return FALSE;
        }
        sealed = g_bytes_new_take(g_steal_pointer(&buf), len);
        if (!vrot_sealkey_auth_load_dir(dir, &auths, error))
                return FALSE;
        if (auths->len == 0) {
                g_set_error(error, VROT_SEALKEY_ERROR, VROT_SEALKEY_ERROR_PCR_MISMATCH,
                            "no PCR authorisation (*%s) in %s: the operator must authorise "
                            "this host's PCR values (docs/sealing.md)",
                            VROT_SEALKEY_AUTH_SUFFIX, dir);
                return FALSE;
        }
        if (!vrot_sealkey_unseal(esys, parent, sealed, policy_key, auths, ret_key, error)) {
                g_prefix_error(error, "%s: ", path);
                return FALSE;
        }
        return TRUE;
}
