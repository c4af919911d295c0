/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "bytes.h"
#include "mkey.h"

#define MAGIC "VMK1"

/* BIND's certificates from *@off on; *@off moves past them. */
static int parse_certs(const uint8_t *buf, size_t len, size_t *off, VrotMkeyRequest *r)
{
        uint8_t taken = r->evict;       /* an EK evicted gets no certificate */
        size_t o = *off;

        if (len <= o)
                return -EAGAIN;
        r->n_certs = buf[o++];
        if (r->n_certs > VROT_MKEY_N_CERTS)
                return -EINVAL;
        for (uint8_t i = 0; i < r->n_certs; i++) {
                VrotMkeyCert *c = &r->certs[i];

                if (len <= o)
                        return -EAGAIN;
                c->ek = buf[o];
                if ((c->ek != VROT_MKEY_EK_RSA && c->ek != VROT_MKEY_EK_ECC) || (taken & c->ek))
                        return -EINVAL;
                taken |= c->ek;
                if (len < o + 3)
                        return -EAGAIN;
                c->len = vrot_get_be16(buf + o + 1);
                if (c->len == 0 || c->len > VROT_MKEY_CERT_MAX)
                        return -EINVAL;
                o += 3;
                if (len < o + c->len)
                        return -EAGAIN;
                c->der = buf + o;
                o += c->len;
        }
        *off = o;
        return 0;
}

int vrot_mkey_parse_request(const uint8_t *buf, size_t len, VrotMkeyRequest *ret)
{
        VrotMkeyRequest r = { 0 };
        size_t off = 5;
        int e;

        if (memcmp(buf, MAGIC, len < 4 ? len : 4) != 0)
                return -EINVAL;
        if (len < 5)
                return -EAGAIN;
        r.op = buf[4];
        switch (r.op) {
        case VROT_MKEY_SET:
        case VROT_MKEY_BIND:
                if (len > 5 && (r.op == VROT_MKEY_SET
                                ? buf[5] != VROT_MKEY_OUT && buf[5] != VROT_MKEY_IN
                                : (buf[5] & ~(VROT_MKEY_EK_RSA | VROT_MKEY_EK_ECC)) != 0))
                        return -EINVAL;
                if (len < VROT_MKEY_FIXED_LEN)
                        return -EAGAIN;
                if (r.op == VROT_MKEY_SET)
                        r.role = buf[5];
                else
                        r.evict = buf[5];
                memcpy(r.id, buf + 6, VROT_MKEY_ID_LEN);
                memcpy(r.key, buf + 6 + VROT_MKEY_ID_LEN, VROT_MKEY_KEY_LEN);
                off = VROT_MKEY_FIXED_LEN;
                if (r.op == VROT_MKEY_BIND && (e = parse_certs(buf, len, &off, &r)) < 0)
                        return e;
                break;
        case VROT_MKEY_STATUS:
        case VROT_MKEY_CLEAR:
                break;
        default:
                return -EINVAL;
        }
        if (len != off)
                return -EINVAL;         /* more than one request */
        *ret = r;
        return 0;
}

size_t vrot_mkey_encode_request(const VrotMkeyRequest *r, uint8_t *out)
{
        size_t off = VROT_MKEY_FIXED_LEN;

        memcpy(out, MAGIC, 4);
        out[4] = r->op;
        if (r->op != VROT_MKEY_SET && r->op != VROT_MKEY_BIND)
                return 5;
        out[5] = r->op == VROT_MKEY_SET ? r->role : r->evict;
        memcpy(out + 6, r->id, VROT_MKEY_ID_LEN);
        memcpy(out + 6 + VROT_MKEY_ID_LEN, r->key, VROT_MKEY_KEY_LEN);
        if (r->op == VROT_MKEY_SET)
                return off;
        out[off++] = r->n_certs;
        for (uint8_t i = 0; i < r->n_certs && i < VROT_MKEY_N_CERTS; i++) {
                if (r->certs[i].len > VROT_MKEY_CERT_MAX)
                        return 0;
                out[off] = r->certs[i].ek;
                vrot_put_be16(out + off + 1, r->certs[i].len);
                memcpy(out + off + 3, r->certs[i].der, r->certs[i].len);
                off += 3 + (size_t)r->certs[i].len;
        }
        return off;
}

int vrot_mkey_parse_answer(const uint8_t *buf, size_t len, VrotMkeyAnswer *ret)
{
        if (len != VROT_MKEY_ANSWER_LEN || buf[4] > VROT_MKEY_IN)
                return -EINVAL;
        ret->result = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
        ret->role = buf[4];
        memcpy(ret->id, buf + 5, VROT_MKEY_ID_LEN);
        ret->exported = buf[5 + VROT_MKEY_ID_LEN];
        ret->imported = buf[6 + VROT_MKEY_ID_LEN];
        return 0;
}

void vrot_mkey_encode_answer(const VrotMkeyAnswer *a, uint8_t *out)
{
        out[0] = (uint8_t)(a->result >> 24);
        out[1] = (uint8_t)(a->result >> 16);
        out[2] = (uint8_t)(a->result >> 8);
        out[3] = (uint8_t)a->result;
        out[4] = a->role;
        memcpy(out + 5, a->id, VROT_MKEY_ID_LEN);
        out[5 + VROT_MKEY_ID_LEN] = a->exported;
        out[6 + VROT_MKEY_ID_LEN] = a->imported;
}
