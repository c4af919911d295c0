/* SPDX-License-Identifier: BSD-3-Clause */
/* vrotd.conf on arbitrary bytes: parsed all or nothing, never a crash. */
#include "config.h"

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size);

int LLVMFuzzerTestOneInput(const guint8 *data, gsize size)
{
        g_autoptr(VrotConfig) cfg = vrot_config_new();
        g_autofree gchar *copy = g_memdup2(data, size);

        if (!vrot_config_parse(cfg, copy, size, NULL)) {
                /* Refused: the defaults must still be in force. */
                g_assert_cmpstr(cfg->state_dir, ==, "/var/lib/vrot");
                g_assert_cmpstr(cfg->runtime_dir, ==, "/run/vrot");
        } else {
                g_assert_true(g_path_is_absolute(cfg->state_dir));
                g_assert_true(g_path_is_absolute(cfg->runtime_dir));
                g_assert_cmpuint(cfg->seal_pcrs, !=, 0);
        }
        return 0;
}
