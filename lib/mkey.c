/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "mkey.h"

#define MAGIC "VMK1"

int vrot_mkey_parse_request(const uint8_t *buf, size_t len, VrotMkeyRequest *ret)
{
        VrotMkeyRequest r = { 0 };

        if (len < 5 || memcmp(buf, MAGIC, 4) != 0)
                return -EINVAL;
        r.op = buf[4];
        switch (r.op) {
        case VROT_MKEY_SET:
        case VROT_MKEY_BIND:
                if (len != VROT_MKEY_REQUEST_MAX)
                        return -EINVAL;
                if (r.op == VROT_MKEY_SET ? buf[5] != VROT_MKEY_OUT && buf[5] != VROT_MKEY_IN
                                          : (buf[5] & ~(VROT_MKEY_EVICT_RSA | VROT_MKEY_EVICT_ECC)) != 0)
                        return -EINVAL;
                if (r.op == VROT_MKEY_SET)
                        r.role = buf[5];
                else
                        r.evict = buf[5];
                memcpy(r.id, buf + 6, VROT_MKEY_ID_LEN);
                memcpy(r.key, buf + 6 + VROT_MKEY_ID_LEN, VROT_MKEY_KEY_LEN);
                break;
        case VROT_MKEY_STATUS:
        case VROT_MKEY_CLEAR:
                if (len != 5)
                        return -EINVAL;
                break;
        default:
                return -EINVAL;
        }
        *ret = r;
        return 0;
}

size_t vrot_mkey_encode_request(const VrotMkeyRequest *r, uint8_t *out)
{
        memcpy(out, MAGIC, 4);
        out[4] = r->op;
        if (r->op != VROT_MKEY_SET && r->op != VROT_MKEY_BIND)
                return 5;
        out[5] = r->op == VROT_MKEY_SET ? r->role : r->evict;
        memcpy(out + 6, r->id, VROT_MKEY_ID_LEN);
        memcpy(out + 6 + VROT_MKEY_ID_LEN, r->key, VROT_MKEY_KEY_LEN);
        return VROT_MKEY_REQUEST_MAX;
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
