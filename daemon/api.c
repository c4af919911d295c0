/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * One function per API method; each checks its parameters (unknown names
 * are errors), checks the caller may touch the instance, calls the
 * lifecycle, and logs the security event with the instance UUID
 * (R-MGT-1, R-MGT-2).  Errors of the lower modules become JSON-RPC errors
 * in to_rpc_error().
 */
#include <string.h>

#include "api.h"
#include "attest.h"
#include "attestverify.h"
#include "channel.h"
#include "endorse.h"
#include "hostca.h"
#include "tpmevidence.h"
#include "uuid.h"
#include "vtpmconn.h"
#include "vtpmident.h"
#include "x509.h"

static const char *const no_params[] = { NULL };

/* A result object; json_node_init_object() takes its own reference. */
static JsonNode *object_node(JsonObject **ret_object)
{
        JsonObject *o = json_object_new();
        JsonNode *node = json_node_init_object(json_node_alloc(), o);

        json_object_unref(o);
        *ret_object = o;
        return node;
}
static const char *const uuid_only[] = { "uuid", NULL };

/* The one boundary from module errors to JSON-RPC codes. */
static void to_rpc_error(GError **error)
{
        gint code = VROT_JSONRPC_ERROR_INTERNAL;

        if (!error || !*error || (*error)->domain == VROT_JSONRPC_ERROR)
                return;
        if ((*error)->domain == VROT_INSTANCES_ERROR) {
                switch ((*error)->code) {
                case VROT_INSTANCES_ERROR_NOT_FOUND: code = VROT_JSONRPC_ERROR_NOT_FOUND; break;
                case VROT_INSTANCES_ERROR_EXISTS: code = VROT_JSONRPC_ERROR_CONFLICT; break;
                case VROT_INSTANCES_ERROR_INVALID: code = VROT_JSONRPC_ERROR_INVALID_PARAMS; break;
                case VROT_INSTANCES_ERROR_REFUSED: code = VROT_JSONRPC_ERROR_STATE_REFUSED; break;
                default: break;
                }
        } else if ((*error)->domain == VROT_HOST_TPM_ERROR) {
                /* INVALID: the caller's blobs are malformed, not the TPM's fault. */
                code = (*error)->code == VROT_HOST_TPM_ERROR_INVALID
                       ? VROT_JSONRPC_ERROR_INVALID_PARAMS : VROT_JSONRPC_ERROR_HOST_TPM;
        } else if ((*error)->domain == VROT_REGISTRY_ERROR &&
                   (*error)->code == VROT_REGISTRY_ERROR_EXISTS) {
                code = VROT_JSONRPC_ERROR_CONFLICT;
        } else if ((*error)->domain == VROT_IDENTITY_ERROR) {
                code = (*error)->code == VROT_IDENTITY_ERROR_NOT_FOUND
                       ? VROT_JSONRPC_ERROR_NOT_FOUND
                       : (*error)->code == VROT_IDENTITY_ERROR_REFUSED
                       ? VROT_JSONRPC_ERROR_EVIDENCE_REFUSED : VROT_JSONRPC_ERROR_INVALID_PARAMS;
        } else if ((*error)->domain == VROT_MIGRATE_ERROR ||
                   (*error)->domain == VROT_MCHANNEL_ERROR) {
                code = (*error)->domain == VROT_MIGRATE_ERROR &&
                       (*error)->code == VROT_MIGRATE_ERROR_CONFIG
                       ? VROT_JSONRPC_ERROR_INVALID_PARAMS : VROT_JSONRPC_ERROR_EVIDENCE_REFUSED;
        } else if ((*error)->domain == VROT_ATTEST_ERROR) {
                code = (*error)->code == VROT_ATTEST_ERROR_REFUSED
                       ? VROT_JSONRPC_ERROR_EVIDENCE_REFUSED : VROT_JSONRPC_ERROR_INVALID_PARAMS;
        } else if ((*error)->domain == VROT_VTPMIDENT_ERROR) {
                code = VROT_JSONRPC_ERROR_CONFLICT;     /* no RSA EK, every key handle taken */
        } else if ((*error)->domain == VROT_VTPM_ERROR &&
                   (*error)->code == VROT_VTPM_ERROR_IO) {
                code = VROT_JSONRPC_ERROR_BUSY;         /* the service holds its data socket */
        } else if ((*error)->domain == VROT_X509_ERROR &&
                   (*error)->code == VROT_X509_ERROR_INVALID) {
                code = VROT_JSONRPC_ERROR_INVALID_PARAMS;       /* a name or URI outside the profile */
        } else if ((*error)->domain == VROT_HOSTCA_ERROR &&
                   (*error)->code != VROT_HOSTCA_ERROR_FAILED) {
                code = VROT_JSONRPC_ERROR_INVALID_PARAMS;       /* the certificate offered */
        }
        /* A new error, not the old one relabelled: errors of the JSON-RPC
         * domain carry extra data (GLib extended errors). */
        {
                GError *rpc = g_error_new_literal(VROT_JSONRPC_ERROR, code, (*error)->message);
                g_clear_error(error);
                *error = rpc;
        }
}

/* Looks the instance up and checks @caller may act on it. */
static gboolean may_touch(VrotApi *api, const VrotCaller *caller, const gchar *uuid,
                          VrotInstanceStatus *st, GError **error)
{
        if (!vrot_instances_status(api->instances, uuid, st, error))
                return FALSE;
        if (!caller->admin && st->entry->owner != caller->uid) {
                vrot_instances_status_clear(st);
                g_message("refused: uid %u may not touch instance %s", (unsigned)caller->uid, uuid);
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_PERMISSION_DENIED,
                            "permission denied: instance %s belongs to another user", uuid);
                return FALSE;
        }
        return TRUE;
}

static JsonNode *status_json(VrotApi *api, const gchar *uuid, gboolean details)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        VrotInstanceStatus st;
        const VrotInstance *e;
        const VrotMigrationRecord *mig;

        if (!vrot_instances_status(api->instances, uuid, &st, NULL))
                return json_node_init_null(json_node_alloc());
        e = st.entry;
        mig = vrot_registry_migration_of(vrot_instances_registry(api->instances), uuid);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "uuid");
        json_builder_add_string_value(b, e->uuid);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, e->name);
        json_builder_set_member_name(b, "kind");
        json_builder_add_string_value(b, e->kind == VROT_INSTANCE_VM ? "vm" : "service");
        json_builder_set_member_name(b, "state");
        json_builder_add_string_value(b, e->deleted ? (e->migrated ? "migrated" : "deleted")
                                         : mig ? vrot_migration_state_name(mig->state)
                                         : st.running ? "running" : st.starting ? "starting"
                                         : "stopped");
        json_builder_set_member_name(b, "owner");
        json_builder_add_int_value(b, e->owner);
        if (details) {
                json_builder_set_member_name(b, "pid");
                if (st.pid > 0)
                        json_builder_add_int_value(b, st.pid);
                else
                        json_builder_add_null_value(b);
                json_builder_set_member_name(b, "ctrl");
                json_builder_add_string_value(b, st.ctrl_path);
                json_builder_set_member_name(b, "data");
                if (st.data_path)
                        json_builder_add_string_value(b, st.data_path);
                else
                        json_builder_add_null_value(b);
                json_builder_set_member_name(b, "generation");
                json_builder_add_int_value(b, (gint64)e->generation);
                json_builder_set_member_name(b, "migration");
                if (mig) {
                        json_builder_begin_object(b);
                        json_builder_set_member_name(b, "id");
                        json_builder_add_string_value(b, mig->id);
                        json_builder_set_member_name(b, "state");
                        json_builder_add_string_value(b, vrot_migration_state_name(mig->state));
                        json_builder_set_member_name(b, "peer");
                        json_builder_add_string_value(b, mig->peer_name);
                        json_builder_end_object(b);
                } else {
                        json_builder_add_null_value(b);
                }
        }
        json_builder_end_object(b);
        vrot_instances_status_clear(&st);
        return json_builder_get_root(b);
}

/* The verified chain as PEM strings, host CA first, fleet root last. */
static void add_chain(JsonBuilder *b, VrotHost *host)
{
        STACK_OF(X509) *path = vrot_host_ca_path(host);

        json_builder_begin_array(b);
        for (int i = 0; path && i < sk_X509_num(path); i++) {
                g_autofree gchar *pem = vrot_x509_to_pem(sk_X509_value(path, i), NULL);
                json_builder_add_string_value(b, pem ? pem : "");
        }
        json_builder_end_array(b);
}

/* enrolled, host_ca_pem, fleet_root_pem and chain_pem, as host.info has them. */
static void add_enrolment(JsonBuilder *b, VrotHost *host)
{
        g_autofree gchar *root = vrot_x509_to_pem(vrot_host_root_cert(host), NULL);
        g_autofree gchar *ca = vrot_host_ca_cert(host) ? vrot_x509_to_pem(vrot_host_ca_cert(host), NULL)
                                                       : NULL;

        json_builder_set_member_name(b, "enrolled");
        json_builder_add_boolean_value(b, vrot_host_enrolled(host));
        json_builder_set_member_name(b, "fleet_root_pem");
        json_builder_add_string_value(b, root ? root : "");
        json_builder_set_member_name(b, "host_ca_pem");
        if (ca)
                json_builder_add_string_value(b, ca);
        else
                json_builder_add_null_value(b);
        json_builder_set_member_name(b, "chain_pem");
        add_chain(b, host);
}

/* "pool": the pre-manufactured vTPMs (vrot-api(7) host.info). */
static void add_pool(JsonBuilder *b, VrotInstances *instances)
{
        VrotPoolStatus st;

        vrot_instances_pool_status(instances, &st);
        json_builder_set_member_name(b, "pool");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, st.size);
        json_builder_set_member_name(b, "ready");
        json_builder_add_int_value(b, st.ready);
        json_builder_set_member_name(b, "warm");
        json_builder_add_boolean_value(b, st.warm);
        json_builder_set_member_name(b, "filling");
        json_builder_add_boolean_value(b, st.filling);
        json_builder_set_member_name(b, "made");
        json_builder_add_int_value(b, (gint64)st.made);
        json_builder_set_member_name(b, "taken");
        json_builder_add_int_value(b, (gint64)st.taken);
        json_builder_set_member_name(b, "discarded");
        json_builder_add_int_value(b, (gint64)st.discarded);
        json_builder_end_object(b);
}

/* "migration": {"name", "transport_cert_pem"}, or null when the host does not migrate. */
static void add_migration(JsonBuilder *b, VrotApi *api)
{
        g_autoptr(GError) local = NULL;
        X509 *cert = NULL;
        g_autofree gchar *pem = NULL;

        json_builder_set_member_name(b, "migration");
        if (!api->migration_name) {
                json_builder_add_null_value(b);
                return;
        }
        if (vrot_host_enrolled(api->host) &&
            !(cert = vrot_host_transport_cert(api->host, api->migration_name, &local)))
                g_warning("the migration transport certificate: %s", local->message);
        pem = cert ? vrot_x509_to_pem(cert, NULL) : NULL;
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, api->migration_name);
        json_builder_set_member_name(b, "transport_cert_pem");
        if (pem)
                json_builder_add_string_value(b, pem);
        else
                json_builder_add_null_value(b);
        json_builder_set_member_name(b, "port");
        json_builder_add_int_value(b, vrot_migration_port(api->migration));
        json_builder_end_object(b);
}

/* "migrations": the journal's unfinished records (docs/migration.md "Recovery"). */
static void add_migrations(JsonBuilder *b, VrotApi *api)
{
        const GPtrArray *all = vrot_registry_migrations(vrot_instances_registry(api->instances));

        json_builder_set_member_name(b, "migrations");
        json_builder_begin_array(b);
        for (guint i = 0; i < all->len; i++) {
                const VrotMigrationRecord *m = all->pdata[i];

                if (m->state != VROT_MIGRATION_DONE)
                        json_builder_add_value(b, vrot_migration_record_to_json(m));
        }
        json_builder_end_array(b);
}

static JsonNode *m_host_info(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                             GError **error)
{
        VrotApi *api = ctx;
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(GPtrArray) all = vrot_instances_list(api->instances);

        (void)caller;
        if (!vrot_jsonrpc_params_check_known(req, no_params, error))
                return NULL;
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "dev");
        json_builder_add_boolean_value(b, api->dev);
        json_builder_set_member_name(b, "tcti");
        json_builder_add_string_value(b, vrot_host_tcti(api->host));
        json_builder_set_member_name(b, "host_tpm_commands");
        json_builder_add_int_value(b, (gint64)vrot_host_tpm_command_count(vrot_host_tpm(api->host)));
        json_builder_set_member_name(b, "host_tpm_usec");
        json_builder_add_int_value(b, (gint64)vrot_host_tpm_command_usec(vrot_host_tpm(api->host)));
        json_builder_set_member_name(b, "instances");
        json_builder_add_int_value(b, all->len);
        json_builder_set_member_name(b, "running");
        json_builder_add_int_value(b, vrot_instances_n_running(api->instances));
        add_pool(b, api->instances);
        add_migrations(b, api);
        add_enrolment(b, api->host);
        add_migration(b, api);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

/* Largest credential blobs: a TPM2B_ID_OBJECT, a TPM2B_ENCRYPTED_SECRET. */
#define MAX_CREDENTIAL_BLOB 1024
/* Largest PEM texts host.import_ca_cert takes. */
#define MAX_CERT_PEM (64 * 1024)
#define MAX_CHAIN_PEM (512 * 1024)

static JsonNode *m_host_evidence(gpointer ctx, const VrotCaller *caller,
                                 const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "nonce", NULL };
        VrotApi *api = ctx;
        g_autoptr(GBytes) nonce = NULL;
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(X509_REQ) csr = NULL;
        g_autofree gchar *csr_pem = NULL;
        JsonNode *evidence, *res;
        JsonObject *o;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_base64(req, "nonce", VROT_JSONRPC_REQUIRED, 1,
                                       VROT_TPMEVIDENCE_MAX_NONCE, &nonce, error))
                return NULL;
        if (!vrot_host_evidence(api->host, nonce, &ev, &csr, error) ||
            !(csr_pem = vrot_x509_csr_to_pem(csr, error)) ||
            !(evidence = vrot_tpmevidence_to_json(ev, error))) {
                g_message("host evidence for uid %u failed: %s", (unsigned)caller->uid,
                          (*error)->message);
                to_rpc_error(error);
                return NULL;
        }
        g_message("host evidence given to uid %u", (unsigned)caller->uid);
        res = object_node(&o);
        json_object_set_member(o, "evidence", evidence);
        json_object_set_string_member(o, "csr_pem", csr_pem);
        return res;
}

static JsonNode *m_host_activate_credential(gpointer ctx, const VrotCaller *caller,
                                            const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "id_object", "encrypted_secret", NULL };
        VrotApi *api = ctx;
        g_autoptr(GBytes) id = NULL, encrypted = NULL, secret = NULL;
        g_autofree gchar *text = NULL;
        JsonNode *res;
        JsonObject *o;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_base64(req, "id_object", VROT_JSONRPC_REQUIRED, 1,
                                       MAX_CREDENTIAL_BLOB, &id, error) ||
            !vrot_jsonrpc_param_base64(req, "encrypted_secret", VROT_JSONRPC_REQUIRED, 1,
                                       MAX_CREDENTIAL_BLOB, &encrypted, error))
                return NULL;
        if (!vrot_host_tpm_activate_credential(vrot_host_tpm(api->host), id, encrypted, &secret,
                                               error)) {
                g_message("refused: credential activation by uid %u: %s", (unsigned)caller->uid,
                          (*error)->message);
                to_rpc_error(error);
                return NULL;
        }
        g_message("credential activated for uid %u", (unsigned)caller->uid);
        text = g_base64_encode(g_bytes_get_data(secret, NULL), g_bytes_get_size(secret));
        res = object_node(&o);
        json_object_set_string_member(o, "secret", text);
        return res;
}

static JsonNode *m_host_import_ca_cert(gpointer ctx, const VrotCaller *caller,
                                       const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "pem", "chain_pem", NULL };
        VrotApi *api = ctx;
        g_autoptr(JsonBuilder) b = NULL;
        const char *pem = NULL, *chain = NULL;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_string(req, "pem", VROT_JSONRPC_REQUIRED, MAX_CERT_PEM, &pem,
                                       error) ||
            !vrot_jsonrpc_param_string(req, "chain_pem", VROT_JSONRPC_OPTIONAL, MAX_CHAIN_PEM,
                                       &chain, error))
                return NULL;
        if (!vrot_host_import_ca_cert(api->host, pem, strlen(pem), chain, chain ? strlen(chain) : 0,
                                      error)) {
                g_message("refused: host CA certificate from uid %u: %s", (unsigned)caller->uid,
                          (*error)->message);
                to_rpc_error(error);
                return NULL;
        }
        g_message("host CA certificate imported by uid %u: the host is enrolled",
                  (unsigned)caller->uid);
        b = json_builder_new();
        json_builder_begin_object(b);
        add_enrolment(b, api->host);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

/* The "uuid" parameter in canonical form into @out; FALSE with an error. */
static gboolean param_uuid(const VrotJsonrpcRequest *req, VrotJsonrpcPresence presence,
                           gchar out[VROT_UUID_STR_LEN + 1], GError **error)
{
        guint8 raw[16];

        out[0] = '\0';
        if (!vrot_jsonrpc_param_uuid(req, "uuid", presence, raw, error))
                return FALSE;
        if (vrot_jsonrpc_param_has(req, "uuid"))
                vrot_uuid_format(raw, out);
        return TRUE;
}

static void set_string_or_null(JsonObject *o, const gchar *name, const gchar *value)
{
        if (value)
                json_object_set_string_member(o, name, value);
        else
                json_object_set_null_member(o, name);
}

/* -32007 unless the host has a host CA (vrotd(8), ENROLMENT); @what it would do with it. */
static gboolean require_enrolled(VrotApi *api, const char *what, GError **error)
{
        if (vrot_host_enrolled(api->host))
                return TRUE;
        g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_NOT_ENROLLED,
                    "this host is not enrolled: it has no host CA certificate to %s; an operator "
                    "enrols it with 'vrotctl host-enrol' (vrotd(8), ENROLMENT)", what);
        return FALSE;
}

static JsonNode *m_create(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                          GError **error)
{
        static const char *const known[] = { "uuid", "kind", "name", "ek", "owner", NULL };
        static const char *const kinds[] = { "vm", "service", NULL };
        static const char *const eks[] = { "both", "rsa", "ecc", NULL };
        static const guint ek_masks[] = { 0, 1u << VROT_ENDORSE_EK_RSA, 1u << VROT_ENDORSE_EK_ECC };
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        const gchar *name = NULL;
        g_autofree gchar *made = NULL, *rsa = NULL, *ecc = NULL;
        guint kind = 0, ek = 0;
        guint64 owner = caller->uid;
        gboolean premade = FALSE;
        JsonNode *res;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !param_uuid(req, VROT_JSONRPC_OPTIONAL, uuid, error) ||
            !vrot_jsonrpc_param_enum(req, "kind", VROT_JSONRPC_REQUIRED, kinds, &kind, error) ||
            !vrot_jsonrpc_param_enum(req, "ek", VROT_JSONRPC_OPTIONAL, eks, &ek, error) ||
            !vrot_jsonrpc_param_string(req, "name", VROT_JSONRPC_REQUIRED, 64, &name, error) ||
            !vrot_jsonrpc_param_uint(req, "owner", VROT_JSONRPC_OPTIONAL, 0, G_MAXUINT32 - 1, &owner,
                                     error))
                return NULL;
        if (!require_enrolled(api, "sign EK certificates with", error)) {
                g_message("refused: create %s by uid %u: the host is not enrolled",
                          uuid[0] ? uuid : "(new)", (unsigned)caller->uid);
                return NULL;
        }
        if (!vrot_instances_create(api->instances, uuid[0] ? uuid : NULL,
                                   kind == 0 ? VROT_INSTANCE_VM : VROT_INSTANCE_SERVICE, name,
                                   (uid_t)owner, ek_masks[ek], &made, &premade, error)) {
                g_message("refused: create %s by uid %u: %s", uuid[0] ? uuid : "(new)",
                          (unsigned)caller->uid, (*error)->message);
                to_rpc_error(error);
                return NULL;
        }
        rsa = vrot_instances_ek_cert_pem(api->instances, made, "rsa", NULL);
        ecc = vrot_instances_ek_cert_pem(api->instances, made, "ecc", NULL);
        res = status_json(api, made, TRUE);
        /* null for an EK that was not asked for */
        set_string_or_null(json_node_get_object(res), "ek_rsa_cert_pem", rsa);
        set_string_or_null(json_node_get_object(res), "ek_ecc_cert_pem", ecc);
        json_object_set_boolean_member(json_node_get_object(res), "from_pool", premade);
        return res;
}

/* The prologue of every method on one instance: only @known parameters, a
 * "uuid" among them, and an instance @caller may act on. */
static gboolean target(VrotApi *api, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                       const char *const *known, gchar uuid[VROT_UUID_STR_LEN + 1], GError **error)
{
        VrotInstanceStatus st;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !param_uuid(req, VROT_JSONRPC_REQUIRED, uuid, error))
                return FALSE;
        if (!may_touch(api, caller, uuid, &st, error)) {
                to_rpc_error(error);
                return FALSE;
        }
        vrot_instances_status_clear(&st);
        return TRUE;
}

typedef gboolean (*Action)(VrotInstances *self, const gchar *uuid, GError **error);

/* start, stop, delete: one UUID, an action, the instance's status back. */
static JsonNode *act(VrotApi *api, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                     Action fn, const gchar *what, GError **error)
{
        gchar uuid[VROT_UUID_STR_LEN + 1];

        if (!target(api, caller, req, uuid_only, uuid, error))
                return NULL;
        if (!fn(api->instances, uuid, error)) {
                g_message("refused: %s %s by uid %u: %s", what, uuid, (unsigned)caller->uid,
                          (*error)->message);
                to_rpc_error(error);
                return NULL;
        }
        g_message("%s %s by uid %u", what, uuid, (unsigned)caller->uid);
        return status_json(api, uuid, TRUE);
}

typedef struct StartCall {
        VrotApi *api;
        VrotCall *call;
        uid_t uid;
} StartCall;

static void on_started(const gchar *uuid, const GError *error, gpointer data)
{
        g_autofree StartCall *sc = data;
        GError *rpc;

        if (!error) {
                g_message("start %s by uid %u", uuid, (unsigned)sc->uid);
                vrot_call_return(sc->call, status_json(sc->api, uuid, TRUE));
                return;
        }
        g_message("refused: start %s by uid %u: %s", uuid, (unsigned)sc->uid, error->message);
        rpc = g_error_copy(error);
        to_rpc_error(&rpc);
        vrot_call_return_error(sc->call, rpc);
}

/* Answered once the worker's control socket listens, so that QEMU can
 * connect at once; meanwhile the daemon serves everyone else, and many
 * starts are under way together (a boot storm). */
static void m_start(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                    VrotCall *call)
{
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        GError *error = NULL;
        StartCall *sc;

        if (!target(api, caller, req, uuid_only, uuid, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        sc = g_new0(StartCall, 1);
        *sc = (StartCall){ .api = api, .call = call, .uid = caller->uid };
        vrot_instances_start_async(api->instances, uuid, on_started, sc);
}

static JsonNode *m_stop(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                        GError **error)
{
        return act(ctx, caller, req, vrot_instances_stop, "stop", error);
}

static JsonNode *m_delete(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                          GError **error)
{
        return act(ctx, caller, req, vrot_instances_delete, "delete", error);
}

static JsonNode *m_info(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                        GError **error)
{
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];

        if (!target(api, caller, req, uuid_only, uuid, error))
                return NULL;
        return status_json(api, uuid, TRUE);
}

static JsonNode *m_list(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                        GError **error)
{
        VrotApi *api = ctx;
        g_autoptr(GPtrArray) uuids = NULL;
        JsonArray *list;
        JsonObject *o;
        JsonNode *res;

        if (!vrot_jsonrpc_params_check_known(req, no_params, error))
                return NULL;
        uuids = vrot_instances_list(api->instances);
        list = json_array_new();
        for (guint i = 0; i < uuids->len; i++) {
                VrotInstanceStatus st;
                if (!vrot_instances_status(api->instances, uuids->pdata[i], &st, NULL))
                        continue;
                if (caller->admin || st.entry->owner == caller->uid)
                        json_array_add_element(list, status_json(api, uuids->pdata[i], FALSE));
                vrot_instances_status_clear(&st);
        }
        res = object_node(&o);
        json_object_set_array_member(o, "instances", list);
        return res;
}

static JsonNode *m_ek_cert(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                           GError **error)
{
        static const char *const known[] = { "uuid", "type", NULL };
        static const char *const types[] = { "rsa", "ecc", NULL };
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        g_autofree gchar *pem = NULL;
        guint type = 0;
        JsonNode *res;
        JsonObject *o;

        if (!vrot_jsonrpc_param_enum(req, "type", VROT_JSONRPC_OPTIONAL, types, &type, error) ||
            !target(api, caller, req, known, uuid, error))
                return NULL;
        pem = vrot_instances_ek_cert_pem(api->instances, uuid, types[type], error);
        if (!pem) {
                to_rpc_error(error);
                return NULL;
        }
        res = object_node(&o);
        json_object_set_string_member(o, "pem", pem);
        return res;
}

/* ---- service identities (docs/identity.md) ------------------------------------------ */

/* uuid, name, uri, days: what identity.issue and identity.challenge share. */
static gboolean identity_request(VrotApi *api, const VrotCaller *caller,
                                 const VrotJsonrpcRequest *req, const char *const *known,
                                 gchar uuid[VROT_UUID_STR_LEN + 1], VrotIdentityRequest *ret,
                                 GError **error)
{
        guint64 days = VROT_IDENTITY_DAYS_DEFAULT;

        *ret = (VrotIdentityRequest){ .uuid = uuid };
        if (!target(api, caller, req, known, uuid, error) ||
            !vrot_jsonrpc_param_string(req, "name", VROT_JSONRPC_REQUIRED, VROT_IDENTITY_NAME_MAX,
                                       &ret->name, error) ||
            !vrot_jsonrpc_param_string(req, "uri", VROT_JSONRPC_OPTIONAL, 1024, &ret->uri, error) ||
            !vrot_jsonrpc_param_uint(req, "days", VROT_JSONRPC_OPTIONAL, 1,
                                     VROT_IDENTITY_DAYS_MAX, &days, error))
                return FALSE;
        if (!require_enrolled(api, "sign identities with", error))
                return FALSE;
        ret->days = (guint)days;
        return TRUE;
}

typedef struct IssueCall {
        VrotCall *call;
} IssueCall;

static void on_issued(JsonNode *result, GError *error, gpointer data)
{
        g_autofree IssueCall *ic = data;

        if (result) {
                vrot_call_return(ic->call, result);
                return;
        }
        to_rpc_error(&error);
        vrot_call_return_error(ic->call, error);
}

static void m_identity_issue(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                             VrotCall *call)
{
        static const char *const known[] = { "uuid", "name", "uri", "days", NULL };
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        VrotIdentityRequest ir;
        GError *error = NULL;
        IssueCall *ic;

        if (!identity_request(api, caller, req, known, uuid, &ir, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        ic = g_new0(IssueCall, 1);
        ic->call = call;
        vrot_identities_issue_async(api->identities, &ir, on_issued, ic);
}

static void log_challenge_refusal(const VrotCaller *caller, const gchar *uuid, GError **error)
{
        g_message("refused: identity.challenge for instance %s by uid %u: %s", uuid,
                  (unsigned)caller->uid, (*error)->message);
        to_rpc_error(error);
}

/* identity.challenge with purpose "attestation": the guest's AK itself. */
static JsonNode *ak_challenge(VrotApi *api, const VrotCaller *caller,
                              const VrotJsonrpcRequest *req, gchar uuid[VROT_UUID_STR_LEN + 1],
                              GError **error)
{
        static const char *const known[] = { "uuid", "purpose", "ak_public", NULL };
        VrotIdentityRequest ir = { .uuid = uuid, .name = VROT_IDENTITY_AK_NAME,
                                   .days = VROT_IDENTITY_AK_DAYS };
        g_autoptr(GBytes) ak = NULL;
        JsonNode *res;

        if (!target(api, caller, req, known, uuid, error) ||
            !vrot_jsonrpc_param_base64(req, "ak_public", VROT_JSONRPC_REQUIRED, 2,
                                       sizeof(TPM2B_PUBLIC), &ak, error))
                return NULL;
        res = vrot_identities_challenge(api->identities, &ir, ak, NULL, error);
        if (!res)
                log_challenge_refusal(caller, uuid, error);
        return res;
}

static JsonNode *m_identity_challenge(gpointer ctx, const VrotCaller *caller,
                                      const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "uuid", "purpose", "name", "uri", "days",
                                             "ak_public", "key_public", NULL };
        static const char *const purposes[] = { "identity", "attestation", NULL };
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        VrotIdentityRequest ir;
        g_autoptr(GBytes) ak = NULL, key = NULL;
        guint purpose = 0;
        JsonNode *res;

        if (!vrot_jsonrpc_param_enum(req, "purpose", VROT_JSONRPC_OPTIONAL, purposes, &purpose,
                                     error))
                return NULL;
        if (purpose == 1) {
                if (!require_enrolled(api, "certify attestation keys with", error))
                        return NULL;
                return ak_challenge(api, caller, req, uuid, error);
        }
        if (!identity_request(api, caller, req, known, uuid, &ir, error) ||
            !vrot_jsonrpc_param_base64(req, "ak_public", VROT_JSONRPC_REQUIRED, 2,
                                       sizeof(TPM2B_PUBLIC), &ak, error) ||
            !vrot_jsonrpc_param_base64(req, "key_public", VROT_JSONRPC_REQUIRED, 2,
                                       sizeof(TPM2B_PUBLIC), &key, error))
                return NULL;
        res = vrot_identities_challenge(api->identities, &ir, ak, key, error);
        if (!res)
                log_challenge_refusal(caller, uuid, error);
        return res;
}

static JsonNode *m_identity_complete(gpointer ctx, const VrotCaller *caller,
                                     const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "challenge", "secret", "attest", "signature", NULL };
        VrotApi *api = ctx;
        const gchar *challenge = NULL, *uuid;
        g_autoptr(GBytes) secret = NULL, attest = NULL, signature = NULL;
        VrotInstanceStatus st;
        JsonNode *res;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_string(req, "challenge", VROT_JSONRPC_REQUIRED, 64, &challenge,
                                       error) ||
            !vrot_jsonrpc_param_base64(req, "secret", VROT_JSONRPC_REQUIRED, 1, 64, &secret,
                                       error) ||
            !vrot_jsonrpc_param_base64(req, "attest", VROT_JSONRPC_OPTIONAL, 1, 2048, &attest,
                                       error) ||
            !vrot_jsonrpc_param_base64(req, "signature", VROT_JSONRPC_OPTIONAL, 1, 80, &signature,
                                       error))
                return NULL;
        /* Only who may touch the challenge's instance may answer it. */
        uuid = vrot_identities_challenge_instance(api->identities, challenge);
        if (uuid && !may_touch(api, caller, uuid, &st, error)) {
                to_rpc_error(error);
                return NULL;
        }
        if (uuid)
                vrot_instances_status_clear(&st);
        res = vrot_identities_complete(api->identities, challenge, secret, attest, signature,
                                       error);
        if (!res)
                to_rpc_error(error);
        return res;
}

static JsonNode *m_identity_revoke(gpointer ctx, const VrotCaller *caller,
                                   const VrotJsonrpcRequest *req, GError **error)
{
        static const char *const known[] = { "serial", NULL };
        VrotApi *api = ctx;
        const gchar *serial = NULL;
        JsonNode *res;

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_string(req, "serial", VROT_JSONRPC_REQUIRED,
                                       VROT_IDENTITY_SERIAL_MAX, &serial, error))
                return NULL;
        res = vrot_identities_revoke(api->identities, serial, error);
        if (!res) {
                g_message("refused: identity.revoke %s by uid %u: %s", serial,
                          (unsigned)caller->uid, (*error)->message);
                to_rpc_error(error);
        } else {
                g_message("identity.revoke %s by uid %u", serial, (unsigned)caller->uid);
        }
        return res;
}

static JsonNode *m_identity_list(gpointer ctx, const VrotCaller *caller,
                                 const VrotJsonrpcRequest *req, GError **error)
{
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];

        if (!vrot_jsonrpc_params_check_known(req, uuid_only, error) ||
            !param_uuid(req, VROT_JSONRPC_OPTIONAL, uuid, error))
                return NULL;
        if (uuid[0] && !target(api, caller, req, uuid_only, uuid, error))
                return NULL;
        return vrot_identities_list(api->identities, uuid[0] ? uuid : NULL,
                                    caller->admin ? -1 : (gint64)caller->uid);
}

/* ---- linked attestation (docs/attestation.md) ------------------------------------------ */

/* An optional array of PCR indices (0 to 23) as a mask; absent: @dflt. */
static gboolean param_pcrs(const VrotJsonrpcRequest *req, const char *name, guint32 dflt,
                           guint32 *ret, GError **error)
{
        JsonObject *params = vrot_jsonrpc_request_get_params(req);
        JsonNode *node = params ? json_object_get_member(params, name) : NULL;
        JsonArray *list = node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;
        guint32 mask = 0;

        if (!node) {
                *ret = dflt;
                return TRUE;
        }
        for (guint i = 0; list && i < json_array_get_length(list); i++) {
                JsonNode *e = json_array_get_element(list, i);
                gint64 v = JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_INT64
                           ? json_node_get_int(e) : -1;
                if (v < 0 || v >= VROT_TPMEVIDENCE_PCRS) {
                        list = NULL;
                        break;
                }
                mask |= 1u << v;
        }
        if (!list || !mask) {
                g_set_error(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                            "\"%s\" must be a non-empty array of PCR indices 0 to %d", name,
                            VROT_TPMEVIDENCE_PCRS - 1);
                return FALSE;
        }
        *ret = mask;
        return TRUE;
}

/* A VM guest's quote: ak_public, attest, signature (base64), pcr_values. */
static gboolean param_guest_quote(const VrotJsonrpcRequest *req, VrotTpmevidenceQuote **ret,
                                  GError **error)
{
        g_autoptr(VrotTpmevidenceQuote) q = g_new0(VrotTpmevidenceQuote, 1);
        JsonObject *params = vrot_jsonrpc_request_get_params(req);

        if (!vrot_jsonrpc_param_base64(req, "ak_public", VROT_JSONRPC_REQUIRED, 2,
                                       sizeof(TPM2B_PUBLIC), &q->ak_public, error) ||
            !vrot_jsonrpc_param_base64(req, "attest", VROT_JSONRPC_REQUIRED, 1, 2048, &q->attest,
                                       error) ||
            !vrot_jsonrpc_param_base64(req, "signature", VROT_JSONRPC_REQUIRED, 1, 80,
                                       &q->signature, error))
                return FALSE;
        if (vrot_jsonrpc_param_has(req, "pcrs") ||
            !vrot_attest_pcrs_parse(json_object_get_member(params, "pcr_values"), &q->pcr_mask,
                                    &q->pcr_values)) {
                g_set_error_literal(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                                    "a guest's quote comes with \"pcr_values\", {\"<index>\": "
                                    "\"<64 hex digits>\"}, and without \"pcrs\"");
                return FALSE;
        }
        *ret = g_steal_pointer(&q);
        return TRUE;
}

typedef struct AttestCall {
        VrotCall *call;
} AttestCall;

static void on_attested(JsonNode *bundle, GError *error, gpointer data)
{
        g_autofree AttestCall *ac = data;

        if (bundle) {
                vrot_call_return(ac->call, bundle);
                return;
        }
        to_rpc_error(&error);
        vrot_call_return_error(ac->call, error);
}

static void m_instance_attest(gpointer ctx, const VrotCaller *caller,
                              const VrotJsonrpcRequest *req, VrotCall *call)
{
        static const char *const known[] = { "uuid", "nonce", "pcrs", "host_pcrs", "event_log",
                                             "ak_public", "attest", "signature", "pcr_values",
                                             NULL };
        VrotApi *api = ctx;
        gchar uuid[VROT_UUID_STR_LEN + 1];
        g_autoptr(GBytes) nonce = NULL, event_log = NULL;
        g_autoptr(VrotTpmevidenceQuote) guest = NULL;
        VrotAttestRequest ar = { .uuid = uuid, .dev = api->dev };
        AttestCall *ac;
        GError *error = NULL;

        if (!target(api, caller, req, known, uuid, &error) ||
            !vrot_jsonrpc_param_base64(req, "nonce", VROT_JSONRPC_REQUIRED, 1, 64, &nonce,
                                       &error) ||
            !param_pcrs(req, "pcrs", VROT_ATTEST_DEFAULT_PCRS, &ar.pcrs, &error) ||
            !param_pcrs(req, "host_pcrs", VROT_ATTEST_DEFAULT_PCRS, &ar.host_pcrs, &error) ||
            !vrot_jsonrpc_param_base64(req, "event_log", VROT_JSONRPC_OPTIONAL, 1, 512 * 1024,
                                       &event_log, &error) ||
            (vrot_jsonrpc_param_has(req, "attest") && !param_guest_quote(req, &guest, &error))) {
                vrot_call_return_error(call, error);
                return;
        }
        ar.guest_quote = guest;
        if (!require_enrolled(api, "certify attestation keys with", &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        ar.nonce = nonce;
        ar.event_log = event_log;
        ac = g_new0(AttestCall, 1);
        ac->call = call;
        vrot_attest_async(api->host, api->instances, api->identities, &ar, on_attested, ac);
}

/* ---- migration (docs/migration.md) ---------------------------------------------------- */

typedef struct MigrateCall {
        VrotCall *call;
} MigrateCall;

static void on_checked(JsonNode *result, GError *error, gpointer data)
{
        g_autofree MigrateCall *mc = data;

        if (result) {
                vrot_call_return(mc->call, result);
                return;
        }
        to_rpc_error(&error);
        vrot_call_return_error(mc->call, error);
}

/* The parameters of a migration method: "to" and, with @uuid, "uuid"; and
 * a host that migrates. */
static gboolean migration_params(VrotApi *api, const VrotJsonrpcRequest *req, const gchar **uuid,
                                 const gchar **to, GError **error)
{
        static const char *const with_uuid[] = { "uuid", "to", NULL };

        if (!vrot_jsonrpc_params_check_known(req, uuid ? with_uuid : with_uuid + 1, error) ||
            (uuid && !vrot_jsonrpc_param_string(req, "uuid", VROT_JSONRPC_REQUIRED, 64, uuid,
                                                error)) ||
            !vrot_jsonrpc_param_string(req, "to", VROT_JSONRPC_REQUIRED, 300, to, error))
                return FALSE;
        if (!api->migration) {
                g_set_error_literal(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                                    "this host does not migrate: vrotd.conf has no [migration] "
                                    "name (vrotd.conf(5))");
                return FALSE;
        }
        return TRUE;
}

static void m_migration_check(gpointer ctx, const VrotCaller *caller,
                              const VrotJsonrpcRequest *req, VrotCall *call)
{
        VrotApi *api = ctx;
        const gchar *to = NULL;
        MigrateCall *mc;
        GError *error = NULL;

        (void)caller;
        if (!migration_params(api, req, NULL, &to, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        mc = g_new0(MigrateCall, 1);
        mc->call = call;
        vrot_migration_check_async(api->migration, to, on_checked, mc);
}

/* instance.migrate (cold) and instance.migrate_prepare (live). */
static void migrate_method(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                           VrotCall *call, gboolean live)
{
        VrotApi *api = ctx;
        const gchar *to = NULL, *uuid = NULL;
        MigrateCall *mc;
        GError *error = NULL;

        if (!migration_params(api, req, &uuid, &to, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        mc = g_new0(MigrateCall, 1);
        mc->call = call;
        g_message("instance %s: %s to %s asked by uid %u", uuid,
                  live ? "live migration" : "migration", to, (unsigned)caller->uid);
        (live ? vrot_migration_prepare_async : vrot_migration_migrate_async)(api->migration, uuid, to,
                                                                             on_checked, mc);
}

static void m_instance_migrate(gpointer ctx, const VrotCaller *caller,
                               const VrotJsonrpcRequest *req, VrotCall *call)
{
        migrate_method(ctx, caller, req, call, FALSE);
}

static void m_instance_migrate_prepare(gpointer ctx, const VrotCaller *caller,
                                       const VrotJsonrpcRequest *req, VrotCall *call)
{
        migrate_method(ctx, caller, req, call, TRUE);
}

/* "uuid" of a live migration's source, on a host that migrates. */
static gboolean live_params(VrotApi *api, const VrotJsonrpcRequest *req, const gchar **uuid,
                            GError **error)
{
        static const char *const known[] = { "uuid", NULL };

        if (!vrot_jsonrpc_params_check_known(req, known, error) ||
            !vrot_jsonrpc_param_string(req, "uuid", VROT_JSONRPC_REQUIRED, 64, uuid, error))
                return FALSE;
        if (api->migration)
                return TRUE;
        g_set_error_literal(error, VROT_JSONRPC_ERROR, VROT_JSONRPC_ERROR_INVALID_PARAMS,
                            "this host does not migrate: vrotd.conf has no [migration] name "
                            "(vrotd.conf(5))");
        return FALSE;
}

static void m_instance_migrate_commit(gpointer ctx, const VrotCaller *caller,
                                      const VrotJsonrpcRequest *req, VrotCall *call)
{
        VrotApi *api = ctx;
        const gchar *uuid = NULL;
        MigrateCall *mc;
        GError *error = NULL;

        if (!live_params(api, req, &uuid, &error)) {
                vrot_call_return_error(call, error);
                return;
        }
        mc = g_new0(MigrateCall, 1);
        mc->call = call;
        g_message("instance %s: live migration commit asked by uid %u", uuid, (unsigned)caller->uid);
        vrot_migration_commit_async(api->migration, uuid, on_checked, mc);
}

static JsonNode *m_instance_migrate_abort(gpointer ctx, const VrotCaller *caller,
                                          const VrotJsonrpcRequest *req, GError **error)
{
        VrotApi *api = ctx;
        const gchar *uuid = NULL;
        JsonNode *res;

        if (!live_params(api, req, &uuid, error))
                return NULL;
        g_message("instance %s: live migration abort asked by uid %u", uuid, (unsigned)caller->uid);
        if (!(res = vrot_migration_abort(api->migration, uuid, error)))
                to_rpc_error(error);
        return res;
}

static JsonNode *m_host_crl(gpointer ctx, const VrotCaller *caller, const VrotJsonrpcRequest *req,
                            GError **error)
{
        VrotApi *api = ctx;
        JsonNode *res;

        (void)caller;
        if (!vrot_jsonrpc_params_check_known(req, no_params, error))
                return NULL;
        if (!require_enrolled(api, "sign a CRL with", error))
                return NULL;
        res = vrot_identities_crl(api->identities, error);
        if (!res)
                to_rpc_error(error);
        return res;
}

static const VrotMethod methods[] = {
        { .name = "host.info", .fn = m_host_info },
        { .name = "host.evidence", .fn = m_host_evidence, .admin_only = TRUE },
        { .name = "host.activate_credential", .fn = m_host_activate_credential,
          .admin_only = TRUE },
        { .name = "host.import_ca_cert", .fn = m_host_import_ca_cert, .admin_only = TRUE },
        { .name = "instance.create", .fn = m_create, .admin_only = TRUE },
        { .name = "instance.start", .async_fn = m_start },
        { .name = "instance.stop", .fn = m_stop },
        { .name = "instance.delete", .fn = m_delete, .admin_only = TRUE },
        { .name = "instance.list", .fn = m_list },
        { .name = "instance.info", .fn = m_info },
        { .name = "instance.ek_cert", .fn = m_ek_cert },
        { .name = "instance.attest", .async_fn = m_instance_attest },
        { .name = "migration.check", .async_fn = m_migration_check, .admin_only = TRUE },
        { .name = "instance.migrate", .async_fn = m_instance_migrate, .admin_only = TRUE },
        { .name = "instance.migrate_prepare", .async_fn = m_instance_migrate_prepare,
          .admin_only = TRUE },
        { .name = "instance.migrate_commit", .async_fn = m_instance_migrate_commit,
          .admin_only = TRUE },
        { .name = "instance.migrate_abort", .fn = m_instance_migrate_abort, .admin_only = TRUE },
        { .name = "identity.issue", .async_fn = m_identity_issue },
        { .name = "identity.challenge", .fn = m_identity_challenge },
        { .name = "identity.complete", .fn = m_identity_complete },
        { .name = "identity.revoke", .fn = m_identity_revoke, .admin_only = TRUE },
        { .name = "identity.list", .fn = m_identity_list },
        { .name = "host.crl", .fn = m_host_crl },
};

const VrotMethod *vrot_api_methods(gsize *ret_n)
{
        *ret_n = G_N_ELEMENTS(methods);
        return methods;
}
