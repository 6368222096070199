/* libosip2 (osipparser2) reference: osip_message_parse() on the workload bytes, then the full-parse fields. */
#include <osipparser2/osip_parser.h>
#include "bench_common.h"

static const char *LIB_NAME = "libosip2";

static void lib_init(void) { parser_init(); }

static int parse_once(const char *buf, size_t len, int full) {
    osip_message_t *sip;
    if (osip_message_init(&sip) != 0) return -1;
    if (osip_message_parse(sip, buf, len) != 0) { osip_message_free(sip); return -1; }
    if (full) {
        unsigned long acc = 0;
        if (MSG_IS_REQUEST(sip)) {
            osip_uri_param_t *tp = NULL;
            acc += slen(sip->sip_method) + slen(sip->req_uri->username) + slen(sip->req_uri->host);
            osip_uri_uparam_get_byname(sip->req_uri, "transport", &tp);
            acc += tp != NULL;
        } else {
            acc += sip->status_code + slen(sip->reason_phrase);
        }
        osip_via_t *via = NULL;
        osip_generic_param_t *p = NULL;
        if (osip_message_get_via(sip, 0, &via) < 0 || via == NULL) { osip_message_free(sip); return -1; }
        acc += slen(via->protocol) + slen(via->host) + (via->port ? atoi(via->port) : 0);
        if (osip_via_param_get_byname(via, "branch", &p) == 0 && p) acc += slen(p->gvalue);
        p = NULL;
        if (osip_via_param_get_byname(via, "rport", &p) == 0 && p) acc += slen(p->gvalue) + 1;
        p = NULL;
        acc += slen(sip->from->url->username) + slen(sip->from->url->host);
        if (osip_from_get_tag(sip->from, &p) == 0 && p) acc += slen(p->gvalue);
        p = NULL;
        acc += slen(sip->to->url->username) + slen(sip->to->url->host);
        if (osip_to_get_tag(sip->to, &p) == 0 && p) acc += slen(p->gvalue);
        acc += atoi(sip->cseq->number) + slen(sip->cseq->method);
        acc += slen(sip->call_id->number) + slen(sip->call_id->host);
        osip_header_t *mf = NULL;
        if (osip_message_get_max_forwards(sip, 0, &mf) >= 0 && mf) acc += atoi(mf->hvalue);
        if (sip->content_length) acc += atoi(sip->content_length->value);
        osip_body_t *body = NULL;
        if (osip_message_get_body(sip, 0, &body) >= 0 && body) acc += body->length;
        sink += acc;
    }
    osip_message_free(sip);
    return 0;
}
