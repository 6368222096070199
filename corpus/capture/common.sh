# Shared helpers for the fastsip corpus capture scripts. Source, don't run.
# All traffic is on 127.0.0.1, ports 15000-15999 only:
#   15060 kamailio (udp+tcp)   15070 SIPp UAS   15080 SIPp UAC   15090 sipsak
#   15100 svmap/svwar          15110 baresip    15400-15599 SIPp media   15900-15950 SIPp control
#   15999 deliberately unused (target for the 408 timeout case)
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
PIDS=()

start_tshark() {  # $1 = pcap name
    tshark -i lo -f 'udp portrange 15000-15999 or tcp portrange 15000-15999' -w "$OUT/$1.pcap" >"$OUT/$1.tshark.log" 2>&1 &
    TSHARK_PID=$!
    # wait until tshark reports it is capturing
    for _ in $(seq 1 50); do grep -q Capturing "$OUT/$1.tshark.log" 2>/dev/null && break; sleep 0.2; done
    sleep 2
}
stop_tshark() {
    sleep 2
    kill "$TSHARK_PID" 2>/dev/null; wait "$TSHARK_PID" 2>/dev/null
}
start_kamailio() {
    kamailio -f "$HERE/kamailio.cfg" -DD -E -Y "$OUT/kamailio-runtime" >"$OUT/kamailio.log" 2>&1 &
    KAM_PID=$!
    for _ in $(seq 1 50); do ss -lun | grep -q '127.0.0.1:15060' && break; sleep 0.2; done
    sleep 0.5
}
stop_kamailio() {
    kill "$KAM_PID" 2>/dev/null; wait "$KAM_PID" 2>/dev/null
}
# SIPp UAS in background: $1 scenario, extra args after
start_uas() {
    local sf=$1; shift
    # never start while a previous UAS still holds the port (bounded wait)
    for _ in $(seq 1 50); do ss -lun | grep -q '127.0.0.1:15070 ' || break; sleep 0.2; done
    sipp -sf "$HERE/$sf" -i 127.0.0.1 -p 15070 -mp 15500 -cp 15901 -m 1 -nostdin -timeout 40s \
        -trace_err -error_file "$OUT/uas-$sf.err" "$@" >"$OUT/uas-$sf.log" 2>&1 &
    UAS_PID=$!
    sleep 0.7
}
wait_uas() {
    # bounded wait for the UAS to finish by itself, then stop it
    for _ in $(seq 1 50); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.2; done
    kill "$UAS_PID" 2>/dev/null; wait "$UAS_PID" 2>/dev/null
}
# SIPp UAC in foreground: $1 scenario, $2 service (R-URI user), extra args after
run_uac() {
    local sf=$1 svc=$2; shift 2
    timeout 60 sipp -sf "$HERE/$sf" -i 127.0.0.1 -p 15080 -mp 15400 -cp 15902 -m 1 -nostdin -timeout 40s \
        -trace_err -error_file "$OUT/uac-$sf.err" -s "$svc" "$@" 127.0.0.1:15060 >"$OUT/uac-$sf.log" 2>&1
    echo "uac $sf rc=$?"
}
