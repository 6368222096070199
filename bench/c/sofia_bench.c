/* sofia-sip reference: msg_make() with the default SIP mclass on the workload bytes, then the fields. */
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/url.h>
#include "bench_common.h"

static const char *LIB_NAME = "sofia-sip";
static msg_mclass_t const *mclass;

static void lib_init(void) { mclass = sip_default_mclass(); }

static int parse_once(const char *buf, size_t len, int full) {
    msg_t *msg = msg_make(mclass, 0, buf, len);
    if (msg == NULL) return -1;
    sip_t *sip = sip_object(msg);
    if (sip == NULL || sip->sip_error || !sip->sip_via) { msg_destroy(msg); return -1; }
    if (full) {
        unsigned long acc = 0;
        if (sip->sip_request) {
            url_t const *u = sip->sip_request->rq_url;
            acc += slen(sip->sip_request->rq_method_name) + slen(u->url_user) + slen(u->url_host);
            acc += url_has_param(u, "transport");
        } else {
            acc += sip->sip_status->st_status + slen(sip->sip_status->st_phrase);
        }
        sip_via_t const *v = sip->sip_via;
        acc += slen(v->v_protocol) + slen(v->v_host) + (v->v_port ? atoi(v->v_port) : 0);
        acc += slen(v->v_branch) + slen(v->v_rport);
        acc += slen(sip->sip_from->a_url->url_user) + slen(sip->sip_from->a_url->url_host) + slen(sip->sip_from->a_tag);
        acc += slen(sip->sip_to->a_url->url_user) + slen(sip->sip_to->a_url->url_host) + slen(sip->sip_to->a_tag);
        acc += sip->sip_cseq->cs_seq + slen(sip->sip_cseq->cs_method_name);
        acc += slen(sip->sip_call_id->i_id);
        if (sip->sip_max_forwards) acc += sip->sip_max_forwards->mf_count;
        if (sip->sip_content_length) acc += sip->sip_content_length->l_length;
        if (sip->sip_payload) acc += sip->sip_payload->pl_len;
        sink += acc;
    }
    msg_destroy(msg);
    return 0;
}
