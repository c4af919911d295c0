/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "registry.h"
#include "unit.h"

static const guint8 key[VROT_REGISTRY_KEY_LEN] = { 0x42, 1, 2, 3 };
static const guint8 other_key[VROT_REGISTRY_KEY_LEN] = { 0x43 };

static VrotInstance *make(const gchar *uuid, const gchar *name, gboolean deleted)
{
        VrotInstance *i = g_new0(VrotInstance, 1);

        i->uuid = g_strdup(uuid);
        i->name = g_strdup(name);
        i->kind = VROT_INSTANCE_SERVICE;
        i->owner = 1000;
        memset(i->salt, 0xab, sizeof(i->salt));
        i->generation = 7;
        i->created = 1700000000;
        i->deleted = deleted;
        return i;
}

static gchar *sample(gsize *len)
{
        g_autoptr(VrotRegistry) r = vrot_registry_new();

        CU_ASSERT_TRUE(vrot_registry_add(r, make("6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b", "web", FALSE), NULL));
        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000001", "gone", TRUE), NULL));
        vrot_registry_set_checkpoint(r, 5);
        CU_ASSERT_TRUE(vrot_registry_pool_add(r, "9a2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f10", NULL));
        CU_ASSERT_TRUE(vrot_registry_pool_add(r, "1b2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f11", NULL));
        return vrot_registry_serialize(r, key, len);
}

static void test_registry_round_trip(void)
{
        gsize len = 0;
        g_autofree gchar *data = sample(&len);
        g_autoptr(GError) err = NULL;
        g_autoptr(VrotRegistry) r = vrot_registry_parse(data, len, key, &err);
        VrotInstance *i;

        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_EQUAL(vrot_registry_checkpoint(r), 5);
        i = vrot_registry_lookup(r, "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b");
        CU_ASSERT_PTR_NOT_NULL_FATAL(i);
        CU_ASSERT_STRING_EQUAL(i->name, "web");
        CU_ASSERT_EQUAL(i->kind, VROT_INSTANCE_SERVICE);
        CU_ASSERT_EQUAL(i->owner, 1000);
        CU_ASSERT_EQUAL(i->generation, 7);
        CU_ASSERT_EQUAL(i->salt[31], 0xab);
        CU_ASSERT_FALSE(i->deleted);
        CU_ASSERT_TRUE(vrot_registry_lookup(r, "00000000-0000-4000-8000-000000000001")->deleted);
        /* The pool keeps its order (oldest first), not sorted. */
        CU_ASSERT_EQUAL_FATAL(vrot_registry_pool(r)->len, 2);
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(r)->pdata[0], "9a2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f10");
        CU_ASSERT_STRING_EQUAL(vrot_registry_pool(r)->pdata[1], "1b2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f11");
        /* Serialising again gives the same bytes: the MAC is stable. */
        {
                gsize len2 = 0;
                g_autofree gchar *again = vrot_registry_serialize(r, key, &len2);
                CU_ASSERT(len2 == len && memcmp(again, data, len) == 0);
        }
}

static void test_registry_refuses_every_flip_and_other_key(void)
{
        gsize len = 0;
        g_autofree gchar *data = sample(&len);

        for (gsize k = 0; k < len; k++) {
                g_autoptr(GError) err = NULL;
                data[k] ^= 0x01;
                CU_ASSERT_PTR_NULL(vrot_registry_parse(data, len, key, &err));
                CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED));
                data[k] ^= 0x01;
        }
        {
                g_autoptr(GError) err = NULL;
                CU_ASSERT_PTR_NULL(vrot_registry_parse(data, len, other_key, &err));
                CU_ASSERT(err && strstr(err->message, "MAC mismatch"));
                g_clear_error(&err);
                CU_ASSERT_PTR_NULL(vrot_registry_parse(data, len - 1, key, &err));
                CU_ASSERT(err && strstr(err->message, "registry refused"));
                g_clear_error(&err);
                CU_ASSERT_PTR_NULL(vrot_registry_parse("", 0, key, &err));
        }
}

/* Authentic (MAC'd with the right key) but wrong inside: still refused. */
/* @body as an authentic registry file: what someone holding the key could write. */
static GString *with_mac(const gchar *body)
{
        GString *f = g_string_new(body);
        guint8 tag[32];
        unsigned int n = sizeof(tag);

        HMAC(EVP_sha256(), key, sizeof(key), (const guint8 *)body, strlen(body), tag, &n);
        g_string_append(f, "\nhmac-sha256 ");
        for (gsize t = 0; t < sizeof(tag); t++)
                g_string_append_printf(f, "%02x", tag[t]);
        g_string_append_c(f, '\n');
        return f;
}

#define SAMPLE_INSTANCE \
        "{\"uuid\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\",\"name\":\"web\",\"kind\":\"vm\"," \
        "\"owner\":0,\"salt\":\"abababababababababababababababababababababababababababababababab\"," \
        "\"generation\":2,\"created\":1,\"deleted\":false}"
#define IDENTITY_ENTRY \
        "{\"serial\":\"0A\",\"instance\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\",\"name\":\"n\"," \
        "\"uri\":\"u\",\"handle\":0,\"issued\":1,\"not_after\":2,\"revoked\":0}"
/* An identity of the sample instance, with @serial and @last as its first and last members. */
#define IDENTITY_BODY(serial, last) \
        "{\"version\":1,\"checkpoint\":0,\"instances\":[" SAMPLE_INSTANCE "],\"identities\":[{" \
        serial ",\"instance\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\",\"name\":\"n\",\"uri\":\"u\"," \
        "\"handle\":0,\"issued\":1,\"not_after\":2," last "}]}"

static void test_registry_refuses_authentic_garbage(void)
{
        static const gchar *const bodies[] = {
                "[]", "{\"version\":2,\"checkpoint\":0,\"instances\":[]}",
                "{\"version\":1,\"checkpoint\":-1,\"instances\":[]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[1]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[{\"uuid\":\"nope\"}]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"pool\":{}}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"pool\":[1]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"pool\":[\"nope\"]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"pool\":"
                "[\"9A2F7E34-1B0C-4D3E-8F5A-6B7C8D9E0F10\"]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"pool\":"
                "[\"9a2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f10\",\"9a2f7e34-1b0c-4d3e-8f5a-6b7c8d9e0f10\"]}",
                "not json at all",
                /* Identities: of an unknown instance, a lower-case or
                 * overlong serial, a member missing or extra, a negative
                 * time, a handle over 32 bits, twice the same serial, and
                 * a CRL number that is not a non-negative integer. */
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"identities\":[{\"serial\":\"0A\","
                "\"instance\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\",\"name\":\"n\",\"uri\":\"u\","
                "\"handle\":0,\"issued\":1,\"not_after\":2,\"revoked\":0}]}",
                IDENTITY_BODY("\"serial\":\"0a\"", "\"revoked\":0"),
                IDENTITY_BODY("\"serial\":\"00000000000000000000000000000000000000000\"", "\"revoked\":0"),
                IDENTITY_BODY("\"serial\":\"0A\"", "\"revoked\":-1"),
                IDENTITY_BODY("\"serial\":\"0A\"", "\"revoked\":0,\"extra\":1"),
                IDENTITY_BODY("\"serial\":\"0A\"", "\"revoked\":\"no\""),
                "{\"version\":1,\"checkpoint\":0,\"instances\":[" SAMPLE_INSTANCE "],\"identities\":"
                "[{\"serial\":\"0A\",\"instance\":\"6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b\",\"name\":\"n\","
                "\"uri\":\"u\",\"handle\":4294967296,\"issued\":1,\"not_after\":2,\"revoked\":0}]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[" SAMPLE_INSTANCE "],\"identities\":"
                "[" IDENTITY_ENTRY ", " IDENTITY_ENTRY "]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"crl_number\":-1}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"identities\":{}}",
                /* A kind that is neither: found by fuzz-registry (the kinds'
                 * list was not NULL-terminated for g_strv_contains). */
                "{\"version\":1,\"checkpoint\":3,\"instances\":[{\"uuid\":"
                "\"6f1c2c1e-7d3a-4a53-9d64-0c9d2e3f4a5b\",\"name\":\"web\",\"kind\":\"container\","
                "\"owner\":0,\"salt\":\"abababababababababababababababababababababababababababababababab\","
                "\"generation\":2,\"created\":1,\"deleted\":false}]}",
        };

        /* The template the identity cases edit is itself fine. */
        {
                g_autoptr(GString) f = with_mac(IDENTITY_BODY("\"serial\":\"0A\"", "\"revoked\":0"));
                g_autoptr(VrotRegistry) r = vrot_registry_parse(f->str, f->len, key, NULL);
                CU_ASSERT_PTR_NOT_NULL(r);
        }
        for (gsize k = 0; k < G_N_ELEMENTS(bodies); k++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(GString) f = with_mac(bodies[k]);

                CU_ASSERT_PTR_NULL(vrot_registry_parse(f->str, f->len, key, &err));
                CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED));
        }
}

/* A registry of before the pool (no "pool" member) parses, with an empty
 * pool; a pool entry's ID and an instance's UUID never coincide. */
static void test_registry_pool_add_remove(void)
{
        static const gchar old[] = "{\"version\":1,\"checkpoint\":0,\"instances\":[]}";
        g_autoptr(VrotRegistry) r = NULL;
        g_autoptr(GError) err = NULL;
        GString *f = g_string_new(old);
        guint8 tag[32];
        unsigned int n = 32;

        HMAC(EVP_sha256(), key, sizeof(key), (const guint8 *)old, strlen(old), tag, &n);
        g_string_append(f, "\nhmac-sha256 ");
        for (gsize t = 0; t < 32; t++)
                g_string_append_printf(f, "%02x", tag[t]);
        g_string_append_c(f, '\n');
        r = vrot_registry_parse(f->str, f->len, key, &err);
        g_string_free(f, TRUE);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_EQUAL(vrot_registry_pool(r)->len, 0);

        CU_ASSERT_TRUE(vrot_registry_pool_add(r, "00000000-0000-4000-8000-0000000000a1", NULL));
        CU_ASSERT_FALSE(vrot_registry_pool_add(r, "00000000-0000-4000-8000-0000000000a1", &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS));
        g_clear_error(&err);
        CU_ASSERT_FALSE(vrot_registry_add(r, make("00000000-0000-4000-8000-0000000000a1", "x", FALSE), &err));
        CU_ASSERT(err && strstr(err->message, "pool entry"));
        g_clear_error(&err);
        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-0000000000a2", "y", FALSE), NULL));
        CU_ASSERT_FALSE(vrot_registry_pool_add(r, "00000000-0000-4000-8000-0000000000a2", &err));
        g_clear_error(&err);
        CU_ASSERT_TRUE(vrot_registry_pool_remove(r, "00000000-0000-4000-8000-0000000000a1"));
        CU_ASSERT_FALSE(vrot_registry_pool_remove(r, "00000000-0000-4000-8000-0000000000a1"));
        CU_ASSERT_EQUAL(vrot_registry_pool(r)->len, 0);
        for (guint k = 0; k < VROT_REGISTRY_POOL_MAX; k++) {
                g_autofree gchar *id = g_strdup_printf("00000000-0000-4000-8000-%012x", k + 0x100);
                CU_ASSERT_TRUE(vrot_registry_pool_add(r, id, NULL));
        }
        CU_ASSERT_FALSE(vrot_registry_pool_add(r, "00000000-0000-4000-8000-0000000000a3", &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED));
}

static void test_registry_tombstone_blocks_reuse(void)
{
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        g_autoptr(GError) err = NULL;

        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000002", "a", TRUE), NULL));
        CU_ASSERT_FALSE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000002", "b", FALSE), &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS));
        CU_ASSERT(err && strstr(err->message, "cannot be reused"));
}

static VrotIdentity *make_identity(const gchar *serial, guint32 handle)
{
        VrotIdentity *id = g_new0(VrotIdentity, 1);

        id->serial = g_strdup(serial);
        id->instance = g_strdup("6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b");
        id->name = g_strdup("billing");
        id->uri = g_strdup("spiffe://example.org/billing");
        id->handle = handle;
        id->issued = 1700000000;
        id->not_after = 1702592000;
        return id;
}

/* Identities and the CRL number go through the MAC'd file and come back
 * as they were; a registry without them (older) has none, number 0. */
static void test_registry_identities(void)
{
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        g_autoptr(VrotRegistry) back = NULL;
        g_autoptr(GError) err = NULL;
        g_autofree gchar *data = NULL;
        gsize len = 0;
        VrotIdentity *id;

        CU_ASSERT_EQUAL(vrot_registry_crl_number(r), 0);
        CU_ASSERT_TRUE(vrot_registry_add(r, make("6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b", "web", FALSE), NULL));
        CU_ASSERT_TRUE(vrot_registry_identity_add(r, make_identity("5F513BB6A0C0547E", 0x81000100), NULL));
        CU_ASSERT_TRUE(vrot_registry_identity_add(r, make_identity("0A", 0), NULL));
        CU_ASSERT_FALSE(vrot_registry_identity_add(r, make_identity("0A", 0), &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS));
        g_clear_error(&err);
        vrot_registry_identity_lookup(r, "0a")->revoked = 1701000000;
        vrot_registry_set_crl_number(r, 3);

        data = vrot_registry_serialize(r, key, &len);
        back = vrot_registry_parse(data, len, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_EQUAL(vrot_registry_crl_number(back), 3);
        CU_ASSERT_EQUAL_FATAL(vrot_registry_identities(back)->len, 2);
        id = vrot_registry_identities(back)->pdata[0];
        CU_ASSERT_STRING_EQUAL(id->serial, "5F513BB6A0C0547E");
        CU_ASSERT_STRING_EQUAL(id->uri, "spiffe://example.org/billing");
        CU_ASSERT_EQUAL(id->handle, 0x81000100);
        CU_ASSERT_EQUAL(id->revoked, 0);
        CU_ASSERT_EQUAL(vrot_registry_identity_lookup(back, "0A")->revoked, 1701000000);
        CU_ASSERT_TRUE(vrot_registry_identity_remove(back, "5F513BB6A0C0547E"));
        CU_ASSERT_FALSE(vrot_registry_identity_remove(back, "5F513BB6A0C0547E"));
        CU_ASSERT_PTR_NULL(vrot_registry_identity_lookup(back, "5F513BB6A0C0547E"));
}

static void test_registry_save_load(void)
{
        g_autofree gchar *path = g_build_filename(unit_tmpdir(), "registry", NULL);
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        g_autoptr(VrotRegistry) back = NULL;
        g_autoptr(GError) err = NULL;

        CU_ASSERT_PTR_NULL(vrot_registry_load(path, key, &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_NOT_FOUND));
        g_clear_error(&err);
        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000003", "x", FALSE), NULL));
        CU_ASSERT_TRUE_FATAL(vrot_registry_save(r, path, key, &err));
        back = vrot_registry_load(path, key, &err);
        CU_ASSERT_PTR_NOT_NULL(back);
        CU_ASSERT_PTR_NOT_NULL(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000003"));
        g_clear_pointer(&back, vrot_registry_free);
        CU_ASSERT_PTR_NULL(back = vrot_registry_load(path, other_key, &err));
        CU_ASSERT(err && strstr(err->message, path));
}

/* Staged, the registry on disk is still the old one; committed, the new
 * one; abandoned, the old one and no temporary file. */
static void test_registry_staged_write(void)
{
        g_autofree gchar *dir = g_build_filename(unit_tmpdir(), "staged", NULL);
        g_autofree gchar *path = g_build_filename(dir, "registry", NULL);
        g_autofree gchar *tmp = g_build_filename(dir, ".registry.tmp", NULL);
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        g_autoptr(VrotRegistry) back = NULL;
        g_autoptr(GError) err = NULL;
        VrotRegistryWrite *w;

        CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000005", "a", FALSE), NULL));
        CU_ASSERT_TRUE_FATAL(vrot_registry_save(r, path, key, &err));
        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000006", "b", FALSE), NULL));

        w = vrot_registry_stage(r, path, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        CU_ASSERT_TRUE(g_file_test(tmp, G_FILE_TEST_IS_REGULAR));
        back = vrot_registry_load(path, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_PTR_NULL(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000006"));
        g_clear_pointer(&back, vrot_registry_free);
        CU_ASSERT_TRUE(vrot_registry_commit(w, &err));
        back = vrot_registry_load(path, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_PTR_NOT_NULL(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000006"));
        g_clear_pointer(&back, vrot_registry_free);
        /* The replaced registry is the temporary file now, for the next
         * write to go over (durable.h, recycling). */
        back = vrot_registry_load(tmp, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_PTR_NULL(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000006"));
        g_clear_pointer(&back, vrot_registry_free);

        CU_ASSERT_TRUE(vrot_registry_add(r, make("00000000-0000-4000-8000-000000000007", "c", FALSE), NULL));
        w = vrot_registry_stage(r, path, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        vrot_registry_abandon(w);
        vrot_registry_abandon(NULL);
        CU_ASSERT_FALSE(g_file_test(tmp, G_FILE_TEST_EXISTS));
        back = vrot_registry_load(path, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_PTR_NULL(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000007"));
        g_clear_pointer(&back, vrot_registry_free);

        /* A directory that is not there fails the stage, with its name. */
        g_autofree gchar *nowhere = g_build_filename(dir, "missing", "registry", NULL);
        CU_ASSERT_PTR_NULL(vrot_registry_stage(r, nowhere, key, &err));
        CU_ASSERT(err && strstr(err->message, "missing"));
}

static VrotMigrationRecord *record(const gchar *id, const gchar *uuid, VrotMigrationState state)
{
        VrotMigrationRecord *m = g_new0(VrotMigrationRecord, 1);

        m->id = g_strdup(id);
        m->uuid = g_strdup(uuid);
        m->state = state;
        m->peer = g_strdup(vrot_migration_state_outgoing(state) ? "127.0.0.1:7070" : "");
        m->peer_name = g_strdup("host-b.example");
        m->since = 1764900000;
        return m;
}

#define MID(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define UUID_A "6f1c2c1e-7d3a-4a53-9d64-0c1d2e3f4a5b"

/* The journal survives a round trip; an ID is taken once; the records that
 * keep an instance from starting are found; DONE records are capped. */
static void test_registry_migrations(void)
{
        g_autoptr(VrotRegistry) r = vrot_registry_new();
        g_autoptr(VrotRegistry) back = NULL;
        g_autoptr(GError) err = NULL;
        g_autofree gchar *data = NULL;
        VrotInstance *gone = make("00000000-0000-4000-8000-000000000001", "gone", TRUE);
        VrotMigrationRecord *m;
        gsize len = 0;

        gone->migrated = TRUE;
        gone->reendorse = TRUE;         /* never written for a tombstone */
        CU_ASSERT_TRUE(vrot_registry_add(r, make(UUID_A, "web", FALSE), NULL));
        CU_ASSERT_TRUE(vrot_registry_add(r, gone, NULL));
        CU_ASSERT_TRUE(vrot_registry_migration_add(r, record(MID("a"), UUID_A, VROT_MIGRATION_LOCKED), NULL));
        CU_ASSERT_FALSE(vrot_registry_migration_add(r, record(MID("a"), UUID_A, VROT_MIGRATION_DONE), &err));
        CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_EXISTS));
        CU_ASSERT_TRUE(vrot_registry_migration_add(r, record(MID("b"), UUID_A, VROT_MIGRATION_DONE), NULL));
        vrot_registry_migration(r, MID("a"))->live = TRUE;
        vrot_registry_lookup(r, UUID_A)->reendorse = TRUE;
        CU_ASSERT_PTR_EQUAL(vrot_registry_migration_of(r, UUID_A), vrot_registry_migration(r, MID("a")));

        data = vrot_registry_serialize(r, key, &len);
        back = vrot_registry_parse(data, len, key, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_TRUE(vrot_registry_lookup(back, "00000000-0000-4000-8000-000000000001")->migrated);
        CU_ASSERT_FALSE(vrot_registry_lookup(back, UUID_A)->migrated);
        CU_ASSERT_TRUE(vrot_registry_lookup(back, UUID_A)->reendorse);
        CU_ASSERT_TRUE(vrot_registry_migration(back, MID("a"))->live);
        CU_ASSERT_FALSE(vrot_registry_migration(back, MID("b"))->live);
        CU_ASSERT_EQUAL_FATAL(vrot_registry_migrations(back)->len, 2);
        m = vrot_registry_migration(back, MID("a"));
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL(m->state, VROT_MIGRATION_LOCKED);
        CU_ASSERT_STRING_EQUAL(m->peer, "127.0.0.1:7070");
        CU_ASSERT_STRING_EQUAL(m->peer_name, "host-b.example");
        CU_ASSERT_EQUAL(m->since, 1764900000);
        m->state = VROT_MIGRATION_COMMITTED;
        CU_ASSERT_PTR_NULL(vrot_registry_migration_of(back, UUID_A));
        CU_ASSERT_TRUE(vrot_registry_migration_remove(back, MID("a")));
        CU_ASSERT_FALSE(vrot_registry_migration_remove(back, MID("a")));

        for (guint k = 0; k < VROT_REGISTRY_DONE_KEPT + 10; k++) {
                g_autofree gchar *id = g_strdup_printf("%032x", k + 1000);
                CU_ASSERT_TRUE(vrot_registry_migration_add(back, record(id, UUID_A, VROT_MIGRATION_DONE), NULL));
        }
        CU_ASSERT_EQUAL(vrot_registry_migrations(back)->len, VROT_REGISTRY_DONE_KEPT);
        CU_ASSERT_PTR_NULL(vrot_registry_migration(back, MID("b")));        /* the oldest went */
}

/* Migration records and "migrated" as an attacker with the key might write them. */
static void test_registry_refuses_bad_migrations(void)
{
#define REC(id, state, since) "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"migrations\":" \
        "[{\"id\":\"" id "\",\"uuid\":\"" UUID_A "\",\"state\":\"" state "\",\"peer\":\"\"," \
        "\"peer_name\":\"b\",\"since\":" since "}]}"
        static const gchar *const bodies[] = {
                REC("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "locked", "1"),
                REC("aaaa", "locked", "1"),
                REC(MID("a"), "running", "1"),
                REC(MID("a"), "locked", "-1"),
                REC(MID("a"), "locked", "\"1\""),
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"migrations\":{}}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"migrations\":[{\"id\":1}]}",
                /* "migrated" on a live instance, or false */
                "{\"version\":1,\"checkpoint\":0,\"instances\":[{\"uuid\":\"" UUID_A "\","
                "\"name\":\"web\",\"kind\":\"vm\",\"owner\":0,\"salt\":"
                "\"abababababababababababababababababababababababababababababababab\","
                "\"generation\":2,\"created\":1,\"deleted\":false,\"migrated\":true}]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[{\"uuid\":\"" UUID_A "\","
                "\"name\":\"web\",\"kind\":\"vm\",\"owner\":0,\"salt\":"
                "\"abababababababababababababababababababababababababababababababab\","
                "\"generation\":2,\"created\":1,\"deleted\":true,\"migrated\":false}]}",
                /* "reendorse" on a tombstone; "live" false */
                "{\"version\":1,\"checkpoint\":0,\"instances\":[{\"uuid\":\"" UUID_A "\","
                "\"name\":\"web\",\"kind\":\"vm\",\"owner\":0,\"salt\":"
                "\"abababababababababababababababababababababababababababababababab\","
                "\"generation\":2,\"created\":1,\"deleted\":true,\"reendorse\":true}]}",
                "{\"version\":1,\"checkpoint\":0,\"instances\":[],\"migrations\":"
                "[{\"id\":\"" MID("a") "\",\"uuid\":\"" UUID_A "\",\"state\":\"locked\","
                "\"peer\":\"\",\"peer_name\":\"b\",\"since\":1,\"live\":false}]}",
        };

        {
                g_autoptr(GString) f = with_mac(REC(MID("a"), "locked", "1"));
                g_autoptr(VrotRegistry) r = vrot_registry_parse(f->str, f->len, key, NULL);
                CU_ASSERT_PTR_NOT_NULL(r);
        }
        for (gsize k = 0; k < G_N_ELEMENTS(bodies); k++) {
                g_autoptr(GError) err = NULL;
                g_autoptr(GString) f = with_mac(bodies[k]);

                CU_ASSERT_PTR_NULL(vrot_registry_parse(f->str, f->len, key, &err));
                CU_ASSERT(g_error_matches(err, VROT_REGISTRY_ERROR, VROT_REGISTRY_ERROR_REFUSED));
        }
#undef REC
}

int main(void)
{
        static const UnitCase cases[] = {
                UNIT_CASE(test_registry_round_trip),
                UNIT_CASE(test_registry_refuses_every_flip_and_other_key),
                UNIT_CASE(test_registry_refuses_authentic_garbage),
                UNIT_CASE(test_registry_pool_add_remove),
                UNIT_CASE(test_registry_tombstone_blocks_reuse),
                UNIT_CASE(test_registry_save_load),
                UNIT_CASE(test_registry_staged_write),
                UNIT_CASE(test_registry_identities),
                UNIT_CASE(test_registry_migrations),
                UNIT_CASE(test_registry_refuses_bad_migrations),
        };
        return UNIT_RUN("registry", cases);
}
