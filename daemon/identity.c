/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "identity.h"
#include "jsonrpc.h"
#include "secret.h"
#include "uuid.h"
#include "vtpmident.h"
#include "x509.h"

G_DEFINE_QUARK(vrot-identity-error-quark, vrot_identity_error)

#define NONCE_LEN 32
#define SECRET_LEN 32
#define VTPM_TIMEOUT_MS 10000   /* the service may hold its data socket */

typedef struct Challenge {
        gchar *id;
        gchar *uuid, *name, *uri;
        guint days;
        GBytes *ak_public, *key_public;
        VrotSecret *secret;
        gint64 expires;                 /* monotonic µs */
} Challenge;

struct VrotIdentities {
        VrotHost *host;
        VrotInstances *instances;
        GHashTable *challenges;         /* id -> Challenge */
        gchar *crl_pem;                 /* the current CRL, or NULL */
        guint64 crl_number;
        gint64 crl_this, crl_next;      /* unix seconds */
};

static gboolean fail(GError **error, VrotIdentityError code, const char *fmt, ...)
        G_GNUC_PRINTF(3, 4);
static gboolean fail(GError **error, VrotIdentityError code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error, g_error_new_valist(VROT_IDENTITY_ERROR, code, fmt, ap));
        va_end(ap);
        return FALSE;
}

static void challenge_free(Challenge *c)
{
        g_free(c->id);
        g_free(c->uuid);
        g_free(c->name);
        g_free(c->uri);
        g_bytes_unref(c->ak_public);
        if (c->key_public)
                g_bytes_unref(c->key_public);
        vrot_secret_free(c->secret);
        g_free(c);
}

VrotIdentities *vrot_identities_new(VrotHost *host, VrotInstances *instances)
{
        VrotIdentities *self = g_new0(VrotIdentities, 1);

        self->host = host;
        self->instances = instances;
        self->challenges = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                                 (GDestroyNotify)challenge_free);
        return self;
}

void vrot_identities_free(VrotIdentities *self)
{
        if (!self)
                return;
        g_hash_table_unref(self->challenges);
        g_free(self->crl_pem);
        g_free(self);
}

/* ---- the request ---------------------------------------------------------------- */

/* Names: 1 to 64 of [A-Za-z0-9._-], so that a name is also a URI path segment. */
static gboolean check_name(const gchar *name, GError **error)
{
        gsize n = name ? strlen(name) : 0;

        for (gsize k = 0; k < n; k++) {
                if (!g_ascii_isalnum(name[k]) && !strchr("._-", name[k]))
                        n = 0;
        }
        if (n == 0 || n > VROT_IDENTITY_NAME_MAX)
                return fail(error, VROT_IDENTITY_ERROR_INVALID,
                            "an identity name has 1 to %d characters of A-Z a-z 0-9 . _ -",
                            VROT_IDENTITY_NAME_MAX);
        return TRUE;
}

/* The instance as the request needs it: @kind, and its RSA EK certificate
 * verified to chain to the fleet root through this host's CA. */
static X509 *instance_ek_cert(VrotIdentities *self, const VrotIdentityRequest *req,
                              VrotInstanceKind kind, gchar **ret_data_path, GError **error)
{
        VrotInstanceStatus st;
        g_autofree gchar *pem = NULL;
        g_autoptr(X509) cert = NULL;
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(X509_STORE_CTX) ctx = X509_STORE_CTX_new();
        STACK_OF(X509) *untrusted = sk_X509_new_null();
        gboolean ok, running;
        VrotInstanceKind is;

        if (!check_name(req->name, error))
                goto fail;
        if (!vrot_instances_status(self->instances, req->uuid, &st, error))
                goto fail;
        is = st.entry->kind;
        running = st.running;
        if (ret_data_path)
                *ret_data_path = g_strdup(st.data_path);
        vrot_instances_status_clear(&st);
        if (is != kind) {
                fail(error, VROT_IDENTITY_ERROR_INVALID,
                     kind == VROT_INSTANCE_SERVICE
                     ? "instance %s is a VM: its guest asks for an identity itself "
                       "(identity.challenge, identity.complete)"
                     : "instance %s is a service: identity.issue makes its identity",
                     req->uuid);
                goto fail;
        }
        if (kind == VROT_INSTANCE_SERVICE && !running) {
                fail(error, VROT_IDENTITY_ERROR_INVALID,
                     "instance %s is not running: start it first", req->uuid);
                goto fail;
        }
        if (!(pem = vrot_instances_ek_cert_pem(self->instances, req->uuid, "rsa", error)) ||
            !(cert = vrot_x509_from_pem(pem, strlen(pem), error)))
                goto fail;
        ok = store && ctx && untrusted && vrot_host_ca_cert(self->host) &&
             X509_STORE_add_cert(store, vrot_host_root_cert(self->host)) == 1 &&
             sk_X509_push(untrusted, vrot_host_ca_cert(self->host)) > 0 &&
             X509_STORE_CTX_init(ctx, store, cert, untrusted) == 1 && X509_verify_cert(ctx) == 1;
        ERR_clear_error();
        if (!ok) {
                fail(error, VROT_IDENTITY_ERROR_REFUSED,
                     "the EK certificate of instance %s does not chain to the fleet root through "
                     "this host's CA", req->uuid);
                goto fail;
        }
        sk_X509_free(untrusted);
        return g_steal_pointer(&cert);
fail:
        sk_X509_free(untrusted);
        if (ret_data_path)
                g_clear_pointer(ret_data_path, g_free);
        return NULL;
}

static GBytes *random_bytes(gsize len)
{
        guint8 *b = g_malloc(len);

        if (RAND_bytes(b, (int)len) != 1)
                g_error("RAND_bytes failed");   /* no entropy: nothing is safe */
        return g_bytes_new_take(b, len);
}

/* ---- issuing ----------------------------------------------------------------------- */

static gchar *serial_hex(X509 *cert)
{
        g_autoptr(BIGNUM) bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        gchar *out = g_strdup(hex);

        OPENSSL_free(hex);
        return out;
}

static JsonNode *identity_json(const VrotIdentity *id)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "serial");
        json_builder_add_string_value(b, id->serial);
        json_builder_set_member_name(b, "instance");
        json_builder_add_string_value(b, id->instance);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, id->name);
        json_builder_set_member_name(b, "uri");
        json_builder_add_string_value(b, id->uri);
        json_builder_set_member_name(b, "handle");
        if (id->handle) {
                g_autofree gchar *h = g_strdup_printf("0x%08x", id->handle);
                json_builder_add_string_value(b, h);
        } else {
                json_builder_add_null_value(b);
        }
        json_builder_set_member_name(b, "issued");
        json_builder_add_int_value(b, id->issued);
        json_builder_set_member_name(b, "not_after");
        json_builder_add_int_value(b, id->not_after);
        json_builder_set_member_name(b, "revoked");
        if (id->revoked)
                json_builder_add_int_value(b, id->revoked);
        else
                json_builder_add_null_value(b);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

/*
 * The host CA certifies @key for the request, the identity is recorded
 * durably, and the result is built: the record plus "certificate_pem"
 * and "chain_pem" (host CA, fleet root).  Main loop only (host TPM).
 */
static JsonNode *issue(VrotIdentities *self, const gchar *uuid, const gchar *name,
                       const gchar *uri_or_null, guint days, EVP_PKEY *key, X509 *ek_cert,
                       guint32 handle, gboolean attestation_key, GError **error)
{
        g_autofree gchar *uri = uri_or_null ? g_strdup(uri_or_null)
                                            : g_strdup_printf("urn:vrot:identity:%s:%s", uuid, name);
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;
        VrotX509IdentityParams p = { .name = name, .uri = uri, .ek_cert = ek_cert,
                                     .not_after = now + (gint64)days * 86400,
                                     .attestation_key = attestation_key };
        VrotRegistry *reg = vrot_instances_registry(self->instances);
        g_autoptr(X509) cert = NULL;
        g_autoptr(VrotIdentity) id = g_new0(VrotIdentity, 1);
        g_autofree gchar *pem = NULL, *serial = NULL;
        JsonNode *res;
        JsonObject *o;
        JsonArray *chain;
        STACK_OF(X509) *path = vrot_host_ca_path(self->host);

        vrot_uuid_parse(uuid, p.instance_uuid, NULL);
        if (!(cert = vrot_x509_identity_cert(vrot_host_ca_signer(self->host), key, &p, error)) ||
            !(pem = vrot_x509_to_pem(cert, error)))
                return NULL;
        serial = serial_hex(cert);
        *id = (VrotIdentity){ .serial = g_strdup(serial), .instance = g_strdup(uuid),
                              .name = g_strdup(name), .uri = g_strdup(uri), .handle = handle,
                              .issued = now, .not_after = p.not_after };
        res = identity_json(id);
        if (!vrot_registry_identity_add(reg, g_steal_pointer(&id), error))
                goto fail;
        if (!vrot_instances_commit(self->instances, error)) {
                vrot_registry_identity_remove(reg, serial);
                goto fail;
        }
        o = json_node_get_object(res);
        json_object_set_string_member(o, "certificate_pem", pem);
        chain = json_array_new();
        for (int i = 0; path && i < sk_X509_num(path); i++) {
                g_autofree gchar *c = vrot_x509_to_pem(sk_X509_value(path, i), NULL);
                json_array_add_string_element(chain, c ? c : "");
        }
        json_object_set_array_member(o, "chain_pem", chain);
        return res;
fail:
        json_node_unref(res);
        return NULL;
}

/* ---- for linked attestation (attest.c) ------------------------------------------------ */

X509 *vrot_identities_ek_cert(VrotIdentities *self, const gchar *uuid, VrotInstanceKind kind,
                              gchar **ret_data_path, GError **error)
{
        VrotIdentityRequest req = { .uuid = uuid, .name = VROT_IDENTITY_AK_NAME };

        return instance_ek_cert(self, &req, kind, ret_data_path, error);
}

gboolean vrot_identities_cert_revoked(VrotIdentities *self, X509 *cert)
{
        g_autofree gchar *serial = serial_hex(cert);
        VrotIdentity *id = vrot_registry_identity_lookup(vrot_instances_registry(self->instances),
                                                         serial);

        return !id || id->revoked != 0;
}

gchar *vrot_identities_issue_ak(VrotIdentities *self, const gchar *uuid, EVP_PKEY *ak,
                                X509 *ek_cert, GError **error)
{
        g_autoptr(JsonNode) res = issue(self, uuid, VROT_IDENTITY_AK_NAME, NULL,
                                        VROT_IDENTITY_AK_DAYS, ak, ek_cert,
                                        VROT_VTPMIDENT_AK_HANDLE, TRUE, error);
        JsonObject *o = res ? json_node_get_object(res) : NULL;

        if (!o)
                return NULL;
        g_message("identity %s issued to instance %s: its attestation key 0x%08x",
                  json_object_get_string_member(o, "serial"), uuid, VROT_VTPMIDENT_AK_HANDLE);
        return g_strdup(json_object_get_string_member(o, "certificate_pem"));
}

/* A guest's AK certificate, kept as the instance's AK certificate (instance.attest). */
static JsonNode *issue_guest_ak(VrotIdentities *self, const gchar *uuid, EVP_PKEY *ak,
                                X509 *ek_cert, GError **error)
{
        JsonNode *res = issue(self, uuid, VROT_IDENTITY_AK_NAME, NULL, VROT_IDENTITY_AK_DAYS, ak,
                              ek_cert, 0, TRUE, error);

        if (res && !vrot_instances_set_ak_cert_pem(self->instances, uuid,
                                                   json_object_get_string_member(
                                                           json_node_get_object(res),
                                                           "certificate_pem"),
                                                   error))
                g_clear_pointer(&res, json_node_unref);
        return res;
}

/* ---- identity.issue: the daemon plays the service vTPM's half ---------------------- */

typedef struct IssueTask {
        VrotIdentities *self;
        gchar *uuid, *name, *uri, *tcti;
        guint days;
        X509 *ek_cert;
        GBytes *nonce;
        VrotSecret *secret;
        EVP_PKEY *key;                  /* the verified identity key */
        guint32 handle;
        VrotIdentityDoneFunc fn;
        gpointer data;
} IssueTask;

static void issue_task_free(IssueTask *t)
{
        g_free(t->uuid);
        g_free(t->name);
        g_free(t->uri);
        g_free(t->tcti);
        X509_free(t->ek_cert);
        g_bytes_unref(t->nonce);
        vrot_secret_free(t->secret);
        EVP_PKEY_free(t->key);
        g_free(t);
}

/* The verifier's credential for Name(AK) under the EK of the certificate. */
gboolean vrot_identities_make_credential(X509 *ek_cert, GBytes *ak_name, const VrotSecret *secret,
                                         GBytes **ret_id, GBytes **ret_encrypted, GError **error)
{
        return vrot_tpmevidence_make_credential(X509_get0_pubkey(ek_cert),
                                                g_bytes_get_data(ak_name, NULL),
                                                g_bytes_get_size(ak_name),
                                                vrot_secret_data(secret), SECRET_LEN, ret_id,
                                                ret_encrypted, error);
}

/*
 * Both proofs: the key certified by the AK (over @nonce, if not NULL), the
 * AK in the EK's TPM.  The guest's certification (identity.complete) is not
 * bound to a nonce: Debian 12's tpm2_certify cannot set its qualifying data,
 * and it need not be fresh.  The AK is fixedTPM and restricted, so whatever
 * it certified is in its TPM whenever that was (identity keys are fixedTPM
 * too); that the AK is in the EK's TPM now is what the one-time credential
 * proves.  docs/identity.md.
 */
/* The answer to the credential is its secret: the AK is in the EK's TPM. */
static gboolean check_answer(const VrotSecret *secret, GBytes *answer, GError **error)
{
        if (!answer || g_bytes_get_size(answer) != SECRET_LEN ||
            CRYPTO_memcmp(g_bytes_get_data(answer, NULL), vrot_secret_data(secret),
                          SECRET_LEN) != 0)
                return fail(error, VROT_IDENTITY_ERROR_REFUSED,
                            "the answer to the credential is not its secret: the attestation key "
                            "is not in the vTPM that holds the EK");
        return TRUE;
}

static gboolean check_proofs(const VrotTpmevidenceKey *key, GBytes *nonce,
                             const VrotSecret *secret, GBytes *answer, EVP_PKEY **ret_key,
                             GError **error)
{
        g_autoptr(GError) local = NULL;

        if (!check_answer(secret, answer, error))
                return FALSE;
        if (!vrot_tpmevidence_verify_key(key, nonce, ret_key, &local))
                return fail(error, VROT_IDENTITY_ERROR_REFUSED,
                            "the identity key is not certified by the attestation key: %s",
                            local->message);
        return TRUE;
}

static gboolean task_credential(GBytes *ak_name, GBytes **ret_id, GBytes **ret_encrypted,
                                gpointer data, GError **error)
{
        IssueTask *t = data;

        return vrot_identities_make_credential(t->ek_cert, ak_name, t->secret, ret_id,
                                               ret_encrypted, error);
}

static gboolean task_check(const VrotTpmevidenceKey *key, GBytes *answer, gpointer data,
                           GError **error)
{
        IssueTask *t = data;

        return check_proofs(key, t->nonce, t->secret, answer, &t->key, error);
}

static void issue_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
        IssueTask *t = data;
        g_autoptr(VrotTpmevidenceKey) key = NULL;
        GError *error = NULL;

        (void)source;
        (void)cancel;
        if (vrot_vtpmident_make(t->tcti, VTPM_TIMEOUT_MS, t->nonce, task_credential, task_check,
                                t, &key, &t->handle, &error))
                g_task_return_boolean(task, TRUE);
        else
                g_task_return_error(task, error);
}

typedef struct Eviction {
        gchar *tcti, *uuid;
        guint32 handle;
} Eviction;

static void eviction_free(Eviction *e)
{
        g_free(e->tcti);
        g_free(e->uuid);
        g_free(e);
}

static void evict_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
        Eviction *e = data;
        g_autoptr(GError) error = NULL;

        (void)source;
        (void)cancel;
        if (vrot_vtpmident_evict(e->tcti, VTPM_TIMEOUT_MS, e->handle, &error))
                g_message("instance %s: evicted the uncertified identity key at 0x%08x", e->uuid,
                          e->handle);
        else
                g_warning("instance %s: the uncertified identity key at 0x%08x stays: %s",
                          e->uuid, e->handle, error->message);
        g_task_return_boolean(task, TRUE);
}

/* The vTPM kept the key, then the host could not certify or record it:
 * free its handle again, in a thread (the vTPM's, never the host TPM). */
static void evict_later(const IssueTask *t)
{
        g_autoptr(GTask) task = g_task_new(NULL, NULL, NULL, NULL);
        Eviction *e = g_new0(Eviction, 1);

        *e = (Eviction){ .tcti = g_strdup(t->tcti), .uuid = g_strdup(t->uuid),
                         .handle = t->handle };
        g_task_set_task_data(task, e, (GDestroyNotify)eviction_free);
        g_task_run_in_thread(task, evict_thread);
}

static void issue_done(GObject *source, GAsyncResult *res, gpointer data)
{
        IssueTask *t = data;
        GError *error = NULL;
        JsonNode *result = NULL;

        (void)source;
        if (g_task_propagate_boolean(G_TASK(res), &error)) {
                result = issue(t->self, t->uuid, t->name, t->uri, t->days, t->key, t->ek_cert,
                               t->handle, FALSE, &error);
                if (!result)
                        evict_later(t);
        }
        if (result)
                g_message("identity %s issued to instance %s: name %s, key 0x%08x",
                          json_object_get_string_member(json_node_get_object(result), "serial"),
                          t->uuid, t->name, t->handle);
        else
                g_message("refused: identity for instance %s (name %s): %s", t->uuid, t->name,
                          error->message);
        t->fn(result, error, t->data);
}

void vrot_identities_issue_async(VrotIdentities *self, const VrotIdentityRequest *req,
                                 VrotIdentityDoneFunc fn, gpointer data)
{
        g_autoptr(GTask) task = NULL;
        g_autofree gchar *data_path = NULL;
        GError *error = NULL;
        IssueTask *t;
        X509 *ek_cert;

        /* Checked before the vTPM makes a key for it. */
        if (req->uri)
                (void)vrot_x509_check_uri(req->uri, &error);
        if (error || !(ek_cert = instance_ek_cert(self, req, VROT_INSTANCE_SERVICE, &data_path,
                                                  &error))) {
                g_message("refused: identity for instance %s: %s", req->uuid, error->message);
                fn(NULL, error, data);
                return;
        }
        t = g_new0(IssueTask, 1);
        *t = (IssueTask){ .self = self, .uuid = g_strdup(req->uuid), .name = g_strdup(req->name),
                          .uri = g_strdup(req->uri), .days = req->days, .ek_cert = ek_cert,
                          .tcti = g_strconcat("swtpm:path=", data_path, NULL),
                          .nonce = random_bytes(NONCE_LEN),
                          .secret = vrot_secret_new(SECRET_LEN, NULL), .fn = fn, .data = data };
        if (!t->secret || RAND_priv_bytes(vrot_secret_data(t->secret), SECRET_LEN) != 1)
                g_error("cannot make a credential secret");
        task = g_task_new(NULL, NULL, issue_done, t);
        g_task_set_task_data(task, t, (GDestroyNotify)issue_task_free);
        g_task_run_in_thread(task, issue_thread);
}

/* ---- the guest's two calls (VM instances) ------------------------------------------ */

static void expire_challenges(VrotIdentities *self)
{
        GHashTableIter it;
        gpointer v;
        gint64 now = g_get_monotonic_time();

        g_hash_table_iter_init(&it, self->challenges);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                if (((Challenge *)v)->expires <= now)
                        g_hash_table_iter_remove(&it);
        }
}

static gchar *b64(GBytes *b)
{
        return g_base64_encode(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
}

/* A guest's AK for its own certificate: restricted, ECC P-256, made in its TPM. */
static gboolean check_guest_ak(GBytes *ak_public, EVP_PKEY **ret_key, GError **error)
{
        g_autoptr(EVP_PKEY) key = NULL;

        if (!vrot_tpmevidence_check_ak(ak_public, &key, error))
                return FALSE;
        if (ret_key)
                *ret_key = g_steal_pointer(&key);
        return TRUE;
}

JsonNode *vrot_identities_challenge(VrotIdentities *self, const VrotIdentityRequest *req,
                                    GBytes *ak_public, GBytes *key_public, GError **error)
{
        g_autoptr(X509) ek_cert = NULL;
        g_autoptr(GBytes) name = NULL, id_object = NULL, encrypted = NULL;
        g_autofree gchar *id_b64 = NULL, *enc_b64 = NULL;
        g_autoptr(GError) local = NULL;
        Challenge *c;
        JsonObject *o;
        JsonNode *res;
        g_autofree gchar *id = g_uuid_string_random();

        expire_challenges(self);
        if (req->uri && !vrot_x509_check_uri(req->uri, error))
                return NULL;
        if (g_hash_table_size(self->challenges) >= VROT_IDENTITY_CHALLENGES_MAX) {
                fail(error, VROT_IDENTITY_ERROR_INVALID,
                     "%u challenges are open; try again when some are answered or expired",
                     VROT_IDENTITY_CHALLENGES_MAX);
                return NULL;
        }
        if (!(ek_cert = instance_ek_cert(self, req, VROT_INSTANCE_VM, NULL, error)))
                return NULL;
        if (!(name = vrot_tpmevidence_name(ak_public, &local)) ||
            (key_public ? !vrot_tpmevidence_name(key_public, &local)
                        : !check_guest_ak(ak_public, NULL, &local))) {
                fail(error, VROT_IDENTITY_ERROR_INVALID, "%s", local->message);
                return NULL;
        }
        c = g_new0(Challenge, 1);
        *c = (Challenge){ .id = g_strdup(id), .uuid = g_strdup(req->uuid),
                          .name = g_strdup(req->name), .uri = g_strdup(req->uri),
                          .days = req->days, .ak_public = g_bytes_ref(ak_public),
                          .key_public = key_public ? g_bytes_ref(key_public) : NULL,
                          .secret = vrot_secret_new(SECRET_LEN, NULL),
                          .expires = g_get_monotonic_time() +
                                     VROT_IDENTITY_CHALLENGE_SECONDS * G_USEC_PER_SEC };
        if (!c->secret || RAND_priv_bytes(vrot_secret_data(c->secret), SECRET_LEN) != 1)
                g_error("cannot make a credential secret");
        if (!vrot_identities_make_credential(ek_cert, name, c->secret, &id_object, &encrypted,
                                             error)) {
                challenge_free(c);
                return NULL;
        }
        g_hash_table_insert(self->challenges, c->id, c);
        id_b64 = b64(id_object);
        enc_b64 = b64(encrypted);
        res = json_node_init_object(json_node_alloc(), json_object_new());
        o = json_node_get_object(res);
        json_object_set_string_member(o, "challenge", c->id);
        json_object_set_string_member(o, "id_object", id_b64);
        json_object_set_string_member(o, "encrypted_secret", enc_b64);
        json_object_set_int_member(o, "expires_in", VROT_IDENTITY_CHALLENGE_SECONDS);
        json_object_unref(o);
        g_message("identity challenge %s for instance %s (name %s)", c->id, c->uuid, c->name);
        return res;
}

const gchar *vrot_identities_challenge_instance(VrotIdentities *self, const gchar *challenge_id)
{
        Challenge *c;

        expire_challenges(self);
        c = g_hash_table_lookup(self->challenges, challenge_id);
        return c ? c->uuid : NULL;
}

/* An identity key certified by the guest's AK. */
static JsonNode *complete_identity(VrotIdentities *self, const Challenge *c, X509 *ek_cert,
                                   GBytes *secret, GBytes *attest, GBytes *signature,
                                   GError **error)
{
        VrotTpmevidenceKey ev = { .ak_public = c->ak_public, .key_public = c->key_public,
                                  .attest = attest, .signature = signature };
        g_autoptr(EVP_PKEY) key = NULL;

        if (!attest || !signature) {
                fail(error, VROT_IDENTITY_ERROR_INVALID, "identity.complete needs the "
                     "certification of the identity key: attest and signature");
                return NULL;
        }
        if (!check_proofs(&ev, NULL, c->secret, secret, &key, error))
                return NULL;
        return issue(self, c->uuid, c->name, c->uri, c->days, key, ek_cert, 0, FALSE, error);
}

/* The guest's AK itself (purpose "attestation", docs/attestation.md). */
static JsonNode *complete_ak(VrotIdentities *self, const Challenge *c, X509 *ek_cert,
                             GBytes *secret, GBytes *attest, GBytes *signature, GError **error)
{
        g_autoptr(EVP_PKEY) ak = NULL;

        if (attest || signature) {
                fail(error, VROT_IDENTITY_ERROR_INVALID,
                     "a challenge for an attestation key takes no attest or signature");
                return NULL;
        }
        if (!check_answer(c->secret, secret, error) || !check_guest_ak(c->ak_public, &ak, error))
                return NULL;
        return issue_guest_ak(self, c->uuid, ak, ek_cert, error);
}

JsonNode *vrot_identities_complete(VrotIdentities *self, const gchar *challenge_id,
                                   GBytes *secret, GBytes *attest, GBytes *signature,
                                   GError **error)
{
        gpointer key_ptr = NULL, value = NULL;
        Challenge *c;
        g_autoptr(X509) ek_cert = NULL;
        JsonNode *res = NULL;
        VrotIdentityRequest req;

        expire_challenges(self);
        if (!g_hash_table_steal_extended(self->challenges, challenge_id, &key_ptr, &value)) {
                g_message("refused: identity.complete of unknown, used or expired challenge %s",
                          challenge_id);
                fail(error, VROT_IDENTITY_ERROR_NOT_FOUND,
                     "no open challenge %s: it was used, it expired, or it never was",
                     challenge_id);
                return NULL;
        }
        c = value;
        req = (VrotIdentityRequest){ .uuid = c->uuid, .name = c->name, .uri = c->uri };
        if ((ek_cert = instance_ek_cert(self, &req, VROT_INSTANCE_VM, NULL, error)))
                res = c->key_public
                      ? complete_identity(self, c, ek_cert, secret, attest, signature, error)
                      : complete_ak(self, c, ek_cert, secret, attest, signature, error);
        if (res)
                g_message("identity %s issued to instance %s: name %s, key in the guest "
                          "(challenge %s)",
                          json_object_get_string_member(json_node_get_object(res), "serial"),
                          c->uuid, c->name, c->id);
        else
                g_message("refused: identity.complete of challenge %s for instance %s: %s",
                          c->id, c->uuid, (*error)->message);
        challenge_free(c);
        return res;
}

/* ---- revocation ------------------------------------------------------------------ */

static gboolean make_crl(VrotIdentities *self, GError **error)
{
        VrotRegistry *reg = vrot_instances_registry(self->instances);
        const GPtrArray *ids = vrot_registry_identities(reg);
        g_autoptr(GArray) revoked = g_array_new(FALSE, FALSE, sizeof(VrotX509Revoked));
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;
        gint64 next = now + VROT_IDENTITY_CRL_DAYS * 86400;
        guint64 number = vrot_registry_crl_number(reg) + 1;
        g_autoptr(X509_CRL) crl = NULL;
        gchar *pem;

        for (guint i = 0; i < ids->len; i++) {
                const VrotIdentity *id = ids->pdata[i];
                VrotX509Revoked r = { .serial_hex = id->serial, .revoked_at = id->revoked };
                if (id->revoked)
                        g_array_append_val(revoked, r);
        }
        if (!vrot_host_enrolled(self->host))
                return fail(error, VROT_IDENTITY_ERROR_INVALID,
                            "this host is not enrolled: it has no host CA to sign a CRL");
        crl = vrot_x509_crl(vrot_host_ca_signer(self->host), (VrotX509Revoked *)revoked->data,
                            revoked->len, number, next, error);
        if (!crl || !(pem = vrot_x509_crl_to_pem(crl, error)))
                return FALSE;
        /* The number is spent once the CRL exists, whether or not anyone got it. */
        vrot_registry_set_crl_number(reg, number);
        if (!vrot_instances_commit(self->instances, error)) {
                vrot_registry_set_crl_number(reg, number - 1);
                g_free(pem);
                return FALSE;
        }
        g_free(self->crl_pem);
        self->crl_pem = pem;
        self->crl_number = number;
        self->crl_this = now;
        self->crl_next = next;
        g_message("CRL %" G_GUINT64_FORMAT " made: %u revoked", number, revoked->len);
        return TRUE;
}

JsonNode *vrot_identities_revoke(VrotIdentities *self, const gchar *serial, GError **error)
{
        VrotRegistry *reg = vrot_instances_registry(self->instances);
        VrotIdentity *id = vrot_registry_identity_lookup(reg, serial);
        g_autoptr(GError) local = NULL;

        if (!id) {
                fail(error, VROT_IDENTITY_ERROR_NOT_FOUND, "no identity has serial %s", serial);
                return NULL;
        }
        if (id->revoked) {
                fail(error, VROT_IDENTITY_ERROR_INVALID, "identity %s is revoked already",
                     id->serial);
                return NULL;
        }
        id->revoked = g_get_real_time() / G_USEC_PER_SEC;
        if (!vrot_instances_commit(self->instances, error)) {
                id->revoked = 0;
                return NULL;
        }
        g_message("identity %s of instance %s (name %s) revoked", id->serial, id->instance,
                  id->name);
        if (!make_crl(self, &local)) {
                /* Revoked durably: the next host.crl tries again. */
                g_warning("making the CRL after revoking %s: %s", id->serial, local->message);
                g_clear_pointer(&self->crl_pem, g_free);
        }
        return identity_json(id);
}

JsonNode *vrot_identities_list(VrotIdentities *self, const gchar *uuid, gint64 owner)
{
        const GPtrArray *ids = vrot_registry_identities(vrot_instances_registry(self->instances));
        JsonArray *list = json_array_new();
        JsonNode *res = json_node_init_object(json_node_alloc(), json_object_new());
        JsonObject *o = json_node_get_object(res);

        for (guint i = 0; i < ids->len; i++) {
                const VrotIdentity *id = ids->pdata[i];
                const VrotInstance *inst =
                        vrot_registry_lookup(vrot_instances_registry(self->instances), id->instance);

                if ((uuid && !g_str_equal(uuid, id->instance)) ||
                    (owner >= 0 && (!inst || inst->owner != (guint64)owner)))
                        continue;
                json_array_add_element(list, identity_json(id));
        }
        json_object_set_array_member(o, "identities", list);
        json_object_unref(o);
        return res;
}

JsonNode *vrot_identities_crl(VrotIdentities *self, GError **error)
{
        gint64 now = g_get_real_time() / G_USEC_PER_SEC;
        JsonNode *res;
        JsonObject *o;

        if ((!self->crl_pem || now >= self->crl_this + (self->crl_next - self->crl_this) / 2) &&
            !make_crl(self, error))
                return NULL;
        res = json_node_init_object(json_node_alloc(), json_object_new());
        o = json_node_get_object(res);
        json_object_set_string_member(o, "pem", self->crl_pem);
        json_object_set_int_member(o, "number", (gint64)self->crl_number);
        json_object_set_int_member(o, "this_update", self->crl_this);
        json_object_set_int_member(o, "next_update", self->crl_next);
        json_object_unref(o);
        return res;
}
