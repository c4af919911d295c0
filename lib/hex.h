/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* Hexadecimal text of untrusted input (files, policies, command lines). */

#include <glib.h>

/**
 * vrot_hex_decode:
 * Exactly @len hex digits of @s (either case, no prefix or separators; @len
 * even) into @len / 2 bytes of @out.  FALSE, with @out partly written, for
 * anything else.
 */
gboolean vrot_hex_decode(const char *s, gsize len, guint8 *out);

/** vrot_hex_encode: (transfer full) @len bytes of @data as lower-case hex. */
gchar *vrot_hex_encode(const guint8 *data, gsize len);
