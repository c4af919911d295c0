/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host evidence as vrotctl receives it: arbitrary bytes as the result
 * of a host.evidence reply, through the strict JSON-RPC response parser,
 * vrot_tpmevidence_from_json() and vrot_tpmevidence_verify().  So that the
 * fuzzer gets past step 1, the input's own EK certificate is trusted (a
 * partial chain); the seeds are real evidence for FUZZ_NONCE, which
 * verifies completely, so mutations reach every later step.  What parses
 * must write out and parse back to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autoptr.h"
#include "jsonrpc.h"
#include "tpmevidence.h"
#include "x509.h"

#define FUZZ_NONCE "vrot fuzz nonce"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(gboolean ok)
{
        if (!ok)
                abort();
}

static void round_trip(const VrotTpmevidence *ev)
{
        g_autoptr(JsonNode) node = vrot_tpmevidence_to_json(ev, NULL);
        g_autoptr(VrotTpmevidence) again = NULL;

        check(node != NULL && vrot_tpmevidence_from_json(node, &again, NULL));
        check(g_bytes_equal(ev->attest, again->attest) &&
              g_bytes_equal(ev->signature, again->signature) &&
              g_bytes_equal(ev->ak_public, again->ak_public) &&
              g_bytes_equal(ev->ca_public, again->ca_public) &&
              g_bytes_equal(ev->ek_public, again->ek_public) &&
              g_bytes_equal(ev->ek_cert, again->ek_cert));
}

static void verify(const VrotTpmevidence *ev)
{
        g_autoptr(GBytes) nonce = g_bytes_new_static(FUZZ_NONCE, strlen(FUZZ_NONCE));
        g_autoptr(X509_STORE) store = X509_STORE_new();
        g_autoptr(X509) ek = vrot_x509_from_der(g_bytes_get_data(ev->ek_cert, NULL),
                                                g_bytes_get_size(ev->ek_cert), NULL);
        g_autoptr(VrotTpmevidenceVerified) v = NULL;
        g_autoptr(GError) error = NULL;

        check(store && ek && X509_STORE_add_cert(store, ek) == 1);
        X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
        if (vrot_tpmevidence_verify(ev, nonce, store, NULL, &v, &error))
                check(v && vrot_tpmevidence_verified_ca_key(v) && vrot_tpmevidence_verified_ek_key(v));
        else
                check(!v && error && error->domain == VROT_TPMEVIDENCE_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":";
        g_autoptr(GString) line = g_string_new(head);
        g_autoptr(JsonNode) id = json_node_init_int(json_node_alloc(), 1);
        g_autoptr(JsonNode) result = NULL;
        g_autoptr(VrotTpmevidence) ev = NULL;
        g_autoptr(GError) error = NULL;

        g_string_append_len(line, (const char *)data, (gssize)size);
        g_string_append_c(line, '}');
        if (!vrot_jsonrpc_parse_response(line->str, line->len, id, &result, NULL))
                return 0;
        if (!vrot_tpmevidence_from_json(result, &ev, &error)) {
                check(error->domain == VROT_TPMEVIDENCE_ERROR &&
                      error->code == VROT_TPMEVIDENCE_ERROR_PARSE);
                return 0;
        }
        round_trip(ev);
        verify(ev);
        return 0;
}
