/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "autoptr.h"
#include "jsonrpc.h"
#include "prover.h"
#include "x509.h"

void vrotctl_prover_clear(VrotctlProver *p)
{
        g_clear_pointer(&p->result, json_node_unref);
        g_clear_pointer(&p->csr, X509_REQ_free);
}

static gboolean bad_answer(GError **error, const char *method, const char *what)
{
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: vrotd's answer %s", method,
                    what);
        return FALSE;
}

gboolean vrotctl_prover_evidence(VrotctlProver *p, GBytes *nonce, VrotTpmevidence **ret,
                                 GError **error)
{
        g_autoptr(JsonObject) params = json_object_new();
        g_autofree gchar *b64 = g_base64_encode(g_bytes_get_data(nonce, NULL),
                                                g_bytes_get_size(nonce));
        g_autoptr(JsonNode) res = NULL;
        g_autoptr(X509_REQ) csr = NULL;
        const char *csr_pem;
        JsonObject *o;

        json_object_set_string_member(params, "nonce", b64);
        if (!vrotctl_call(p->client, "host.evidence", params, &res, error))
                return FALSE;
        if (!JSON_NODE_HOLDS_OBJECT(res))
                return bad_answer(error, "host.evidence", "is not an object");
        o = json_node_get_object(res);
        if (!(csr_pem = vrotctl_member_string(o, "csr_pem")))
                return bad_answer(error, "host.evidence", "has no csr_pem");
        if (!(csr = vrot_x509_csr_from_pem(csr_pem, strlen(csr_pem), error)) ||
            !vrot_tpmevidence_from_json(json_object_get_member(o, "evidence"), ret, error)) {
                g_prefix_error(error, "host.evidence: ");
                return FALSE;
        }
        vrotctl_prover_clear(p);
        p->result = g_steal_pointer(&res);
        p->csr = g_steal_pointer(&csr);
        return TRUE;
}

static gboolean evidence(gpointer data, GBytes *nonce, VrotTpmevidence **ret, GError **error)
{
        return vrotctl_prover_evidence(data, nonce, ret, error);
}

static gboolean activate(gpointer data, GBytes *id_object, GBytes *encrypted_secret,
                         GBytes **ret_secret, GError **error)
{
        VrotctlProver *p = data;
        g_autoptr(JsonObject) params = json_object_new();
        g_autofree gchar *id = g_base64_encode(g_bytes_get_data(id_object, NULL),
                                               g_bytes_get_size(id_object));
        g_autofree gchar *enc = g_base64_encode(g_bytes_get_data(encrypted_secret, NULL),
                                                g_bytes_get_size(encrypted_secret));
        g_autoptr(JsonNode) res = NULL;
        const char *secret;

        json_object_set_string_member(params, "id_object", id);
        json_object_set_string_member(params, "encrypted_secret", enc);
        if (!vrotctl_call(p->client, "host.activate_credential", params, &res, error))
                return FALSE;
        if (!JSON_NODE_HOLDS_OBJECT(res) ||
            !(secret = vrotctl_member_string(json_node_get_object(res), "secret")))
                return bad_answer(error, "host.activate_credential", "has no secret");
        if (!vrot_jsonrpc_base64_decode(secret, strlen(secret), VROT_TPMEVIDENCE_MAX_SECRET,
                                        ret_secret, error)) {
                g_prefix_error(error, "host.activate_credential: secret: ");
                return FALSE;
        }
        return TRUE;
}

const VrotTpmevidenceProver vrotctl_prover = { evidence, activate };
