#!/bin/sh
# A two-node Corosync/Pacemaker lab on one machine: each node in its own network namespace
# (veth to the bridge lphabr0) and its own mount and UTS namespace (private /run, /dev/shm,
# /var/lib/pacemaker, /var/lib/corosync). Used by test/e2e/pacemaker.test.ts; see ha/README.md.
#
#   lab.sh net STATE             bridge, namespaces lpha-ha1, lpha-ha2, lpha-cl (the client)
#   lab.sh targets STATE         format mdt0 (MGS), ost1, ost2 in STATE/targets
#   lab.sh node STATE N          run node haN (corosync + pacemakerd) in its namespaces; blocks
#   lab.sh in N CMD...           run CMD in haN's namespaces (crm_mon, cibadmin, ...)
#   lab.sh crash N               SIGKILL every process of haN (a node that dies)
#   lab.sh cut N | heal N        take haN's link down / up (a partition; processes live on)
#   lab.sh down STATE            delete the namespaces, veths and bridge
# Addresses are 10.121.0.0/24, inside these namespaces only: 127.0.0.0/8 is local in every
# namespace, so loopback addresses cannot cross a veth.
set -eu
cmd=$1
STATE=${2:-}
BR=lphabr0
NET=10.121.0
: "${LPHA_TOKEN_MS:=1000}"
: "${LPHA_PORT:=32510}"
LPROXY="node $(dirname "$0")/../../bin/lproxy.js"
NID1=$NET.1@tcp
NID2=$NET.2@tcp

ns_ip() { # name -> last octet
  case $1 in ha1) echo 1 ;; ha2) echo 2 ;; cl) echo 10 ;; esac
}

net_up() {
  ip link add $BR type bridge
  ip link set $BR up
  for n in ha1 ha2 cl; do
    ip netns add lpha-$n
    ip link add lpha-$n-h type veth peer name eth0 netns lpha-$n
    ip link set lpha-$n-h master $BR up
    ip -n lpha-$n addr add $NET.$(ns_ip $n)/24 dev eth0
    ip -n lpha-$n link set eth0 up
    ip -n lpha-$n link set lo up
  done
}

net_down() {
  for n in ha1 ha2 cl; do
    ip netns pids lpha-$n 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip link del lpha-$n-h 2>/dev/null || true
    ip netns del lpha-$n 2>/dev/null || true
  done
  ip link del $BR 2>/dev/null || true
}

corosync_conf() { # node
  cat <<CONF
totem {
  version: 2
  cluster_name: lpha
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  token: $LPHA_TOKEN_MS
  join: 50
}
nodelist {
  node {
    name: ha1
    nodeid: 1
    ring0_addr: $NET.1
  }
  node {
    name: ha2
    nodeid: 2
    ring0_addr: $NET.2
  }
}
quorum {
  provider: corosync_votequorum
  two_node: 1
}
logging {
  to_stderr: no
  to_syslog: no
  to_logfile: yes
  logfile: $STATE/$1/corosync.log
  timestamp: on
}
CONF
}

targets() {
  t=$STATE/targets
  mkdir -p "$t"
  # Scaled down: MMP and the obd timeout, so that a takeover waits seconds, not minutes.
  common="--fsname lpha --port $LPHA_PORT --param mmp_interval=0.2 --param sys.timeout=5 --param commit_interval=0.5"
  $LPROXY format "$t/mdt0" $common --mgs --mdt --index 0 --failnode $NID2 >/dev/null
  $LPROXY format "$t/ost1" $common --ost --index 1 --mgsnode $NID1:$NID2 --failnode $NID2 >/dev/null
  $LPROXY format "$t/ost2" $common --ost --index 2 --mgsnode $NID1:$NID2 --failnode $NID1 >/dev/null
}

# One target as an ocf:lproxy:target primitive; its NID is the one of the node it runs on.
primitive() { # id home
  cat <<XML
      <primitive id="$1" class="ocf" provider="lproxy" type="target">
        <instance_attributes id="$1-ia">
          <nvpair id="$1-dir" name="dir" value="$STATE/targets/$1"/>
          <nvpair id="$1-port" name="port" value="$LPHA_PORT"/>
        </instance_attributes>
        <instance_attributes id="$1-on-ha1" score="2">
          <rule id="$1-on-ha1-r" score="0"><expression id="$1-on-ha1-e" attribute="#uname" operation="eq" value="ha1"/></rule>
          <nvpair id="$1-nid-ha1" name="nid" value="$NID1"/>
        </instance_attributes>
        <instance_attributes id="$1-on-ha2" score="1">
          <rule id="$1-on-ha2-r" score="0"><expression id="$1-on-ha2-e" attribute="#uname" operation="eq" value="ha2"/></rule>
          <nvpair id="$1-nid-ha2" name="nid" value="$NID2"/>
        </instance_attributes>
        <operations>
          <op id="$1-start" name="start" interval="0" timeout="120s"/>
          <op id="$1-stop" name="stop" interval="0" timeout="90s"/>
          <op id="$1-monitor" name="monitor" interval="3s" timeout="40s"/>
        </operations>
      </primitive>
XML
}

# A fence device per node, usable only by the other (a node does not fence itself); ha2's
# fencing of ha1 waits (longer than fence_lproxy takes under load), so that in a partition
# ha1 fences first and ha2 never does.
fence_device() { # node nid delay
  other=ha1; [ "$1" = ha1 ] && other=ha2
  cat <<XML
      <primitive id="fence-$1" class="stonith" type="fence_lproxy">
        <instance_attributes id="fence-$1-ia">
          <nvpair id="fence-$1-map" name="pcmk_host_map" value="$1:$2"/>
          <nvpair id="fence-$1-check" name="pcmk_host_check" value="static-list"/>
          <nvpair id="fence-$1-list" name="pcmk_host_list" value="$1"/>
$([ -z "$3" ] || echo "          <nvpair id=\"fence-$1-delay\" name=\"pcmk_delay_base\" value=\"$3\"/>")
        </instance_attributes>
        <operations><op id="fence-$1-monitor" name="monitor" interval="60s"/></operations>
      </primitive>
XML
}

cib() {
  cat <<XML
<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="1">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="o-stonith" name="stonith-enabled" value="true"/>
        <nvpair id="o-action" name="stonith-action" value="off"/>
        <nvpair id="o-timeout" name="stonith-timeout" value="60s"/>
        <nvpair id="o-dcdead" name="dc-deadtime" value="3s"/>
        <nvpair id="o-startup" name="startup-fencing" value="false"/>
        <nvpair id="o-recheck" name="cluster-recheck-interval" value="30s"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources>
$(fence_device ha1 $NID1 15s)
$(fence_device ha2 $NID2 '')
$(primitive mdt0)
$(primitive ost1)
$(primitive ost2)
    </resources>
    <constraints>
      <rsc_location id="l-fence-ha1" rsc="fence-ha1" node="ha1" score="-INFINITY"/>
      <rsc_location id="l-fence-ha2" rsc="fence-ha2" node="ha2" score="-INFINITY"/>
      <rsc_location id="l-mdt0" rsc="mdt0" node="ha1" score="100"/>
      <rsc_location id="l-ost1" rsc="ost1" node="ha1" score="100"/>
      <rsc_location id="l-ost2" rsc="ost2" node="ha2" score="100"/>
      <rsc_order id="o-ost1" first="mdt0" then="ost1" kind="Optional"/>
      <rsc_order id="o-ost2" first="mdt0" then="ost2" kind="Optional"/>
    </constraints>
  </configuration>
  <status/>
</cib>
XML
}

in_node() { # N CMD...
  n=$1
  shift
  pid=$(ip netns pids lpha-$n | head -1)
  [ -n "$pid" ] || { echo "node $n is not running" >&2; exit 1; }
  exec nsenter -t "$pid" -n -m -u "$@"
}

# Runs inside `ip netns exec lpha-haN unshare -m -u`: private mounts, then both daemons.
node_inside() {
  n=$1
  d=$STATE/$n
  hostname "$n"
  mount -t tmpfs -o mode=755 lpha-run /run
  mount -t tmpfs -o mode=1777 lpha-shm /dev/shm
  mount --bind "$d/pacemaker" /var/lib/pacemaker
  mount --bind "$d/corosync" /var/lib/corosync
  mkdir -p /run/lproxy /run/crm
  corosync_conf "$n" >"$d/corosync.conf"
  corosync -f -c "$d/corosync.conf" >>"$d/corosync.out" 2>&1 &
  # pacemakerd finds corosync through its IPC; give it the moment corosync needs to listen.
  i=0
  until corosync-cmapctl totem.cluster_name >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "corosync did not come up on $n" >&2; exit 1; }
    sleep 0.05
  done
  PCMK_logfile=$d/pacemaker.log PCMK_node_start_state=online exec pacemakerd >>"$d/pacemakerd.out" 2>&1
}

node_run() {
  n=$1
  d=$STATE/$n
  mkdir -p "$d/pacemaker/cib" "$d/pacemaker/pengine" "$d/pacemaker/blackbox" "$d/pacemaker/cores" "$d/corosync"
  chown -R hacluster:haclient "$d/pacemaker"
  chmod 750 "$d/pacemaker/cib"
  # The configuration is there from the first start: no 20 s default dc-deadtime, no reload.
  [ -f "$d/pacemaker/cib/cib.xml" ] || cib >"$d/pacemaker/cib/cib.xml"
  chown hacluster:haclient "$d/pacemaker/cib/cib.xml"
  exec ip netns exec lpha-$n unshare -m -u --propagation private "$0" inside "$STATE" "$n"
}

case $cmd in
  net) net_up ;;
  down) net_down ;;
  targets) targets ;;
  cib) cib ;;
  node) node_run "$3" ;;
  in) shift; in_node "$@" ;;
  inside) node_inside "$3" ;;
  crash) # its processes fork and exit meanwhile (monitors): kill what is listed until none is
    for _ in $(seq 100); do
      pids=$(ip netns pids lpha-$2)
      [ -n "$pids" ] || exit 0
      kill -9 $pids 2>/dev/null || true
      sleep 0.05
    done
    echo "lab.sh crash $2: still running: $(ip netns pids lpha-$2 | tr '\n' ' ')" >&2
    exit 1 ;;
  cut) ip link set lpha-$2-h down ;;
  heal) ip link set lpha-$2-h up ;;
  *) echo "usage: $0 net|node|cut|heal|down ..." >&2; exit 2 ;;
esac
