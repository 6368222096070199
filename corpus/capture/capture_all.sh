#!/bin/bash
# Recapture the tool-generated part of the fastsip corpus on loopback.
# Needs: kamailio, sip-tester (sipp), sipsak, sipvicious (svmap/svwar), tshark; run as root
# (tshark on lo). Everything binds 127.0.0.1, ports 15000-15999 only; each
# process started here is stopped by pid. Output: out/capture.pcap (one capture
# for the whole run), out/steps.txt (time window of each step) and
# out/msgs/<step>/NNNN_proto_sport-dport_<start line>.raw (one SIP message each),
# from which corpus/valid/*.sip are copied by pick.py.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
cd "$HERE"
rm -rf "$OUT"; mkdir -p "$OUT"
python3 gen_scenarios.py >/dev/null

CUR=""
step() {  # close the previous step window, open a new one
    local now; now=$(date +%s.%N)
    [ -n "$CUR" ] && echo "$CUR $CUR_T $now" >>"$OUT/steps.txt"
    CUR=$1; CUR_T=$now
    [ -n "$CUR" ] && echo "=== $CUR"
}
gap() { sleep 1.5; }

start_tshark capture
start_kamailio

# --- SIPp through kamailio ---------------------------------------------------
for pair in "call-full:call-full:bob" "options:options:bob" "message:message:bob" \
            "subscribe:subscribe:bob" "cancel:cancel:bob" "busy:busy:bob" \
            "auth-invite:answer:authbob"; do
    IFS=: read -r uac uas svc <<<"$pair"
    step "sipp-$uac"
    start_uas "uas-$uas.xml"
    run_uac "uac-$uac.xml" "$svc"
    wait_uas; gap
done
step sipp-options-tcp; start_uas uas-options.xml; run_uac uac-options.xml bob -t t1; wait_uas; gap
step sipp-timeout;  run_uac uac-timeout.xml unavail; gap
step sipp-503;      run_uac uac-503.xml svc503;      gap
step sipp-register; run_uac uac-register.xml alice;  gap

# --- baresip: REGISTER with auth, call bob through kamailio, hang up, unregister ---
# (the call ends right after 200/ACK because the ausine source wants 48 kHz; baresip then sends BYE)
step baresip
rm -rf "$OUT/baresip-conf"; cp -r "$HERE/baresip" "$OUT/baresip-conf"   # baresip writes a uuid file there
start_uas uas-answer.xml
timeout 30 baresip -f "$OUT/baresip-conf" -t 6 -e "/dial sip:bob@127.0.0.1:15060" >"$OUT/baresip.log" 2>&1; echo "  rc=$?"
wait_uas; gap

# --- sipsak -------------------------------------------------------------------
# (sipsak 0.9.8.1 -M "message" mode segfaults here, so MESSAGE comes from SIPp only)
SK="-l 15090 -S -k 127.0.0.1"  # -S: send from the listening port too (stay in 15000-15999)
step sipsak-options
timeout 20 sipsak $SK -s sip:127.0.0.1:15060 >"$OUT/sipsak-options.log" 2>&1; echo "  rc=$?"; gap
step sipsak-register
timeout 20 sipsak $SK -U -C sip:carol@127.0.0.1:15091 -x 300 -a secret -s sip:carol@127.0.0.1:15060 >"$OUT/sipsak-register.log" 2>&1; echo "  rc=$?"; gap
step sipsak-trace
timeout 20 sipsak $SK -T -s sip:bob@127.0.0.1:15060 >"$OUT/sipsak-trace.log" 2>&1; echo "  rc=$?"; gap
step sipsak-call
timeout 30 sipsak $SK -I -b 1 -e 1 -a secret -s sip:dave@127.0.0.1:15060 >"$OUT/sipsak-call.log" 2>&1; echo "  rc=$?"; gap

# --- sipvicious -----------------------------------------------------------------
step svmap
timeout 20 svmap -P 15100 -p 15060 127.0.0.1 >"$OUT/svmap.log" 2>&1; echo "  rc=$?"; gap
step svmap-compact
timeout 20 svmap -c -P 15101 -p 15060 127.0.0.1 >"$OUT/svmap-compact.log" 2>&1; echo "  rc=$?"; gap
step svwar
timeout 30 svwar -P 15102 -p 15060 -e 100-101 -m REGISTER 127.0.0.1 >"$OUT/svwar.log" 2>&1; echo "  rc=$?"; gap
step svwar-options
timeout 30 svwar -P 15103 -p 15060 -e 100-101 -m OPTIONS 127.0.0.1 >"$OUT/svwar-options.log" 2>&1; echo "  rc=$?"; gap

step ""
stop_kamailio
stop_tshark
python3 extract.py "$OUT/capture.pcap" "$OUT/msgs" "$OUT/steps.txt" >/dev/null
for d in "$OUT"/msgs/*/; do echo "$(basename "$d"): $(ls "$d" | wc -l) messages"; done
