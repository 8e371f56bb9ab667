#!/usr/bin/env bash
# Tear down everything start-all.sh started (by pid files), in order.
D=/tmp/node-explore
CRI="$D/bin/crictl -r unix://$D/ctrd/containerd.sock -i unix://$D/ctrd/containerd.sock"
stop() { [ -f "$1" ] || return 0; local p; p=$(cat "$1"); kill "$p" 2>/dev/null; for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; kill -9 "$p" 2>/dev/null; rm -f "$1"; }
t0=$(date +%s.%N)
stop $D/kubelet/pid
stop $D/proxy/pid
# pods: stop + remove every sandbox through CRI (runs CNI DEL, removes netns), then plain ctr leftovers
[ -S $D/ctrd/containerd.sock ] && $CRI rmp -fa >/dev/null 2>&1
[ -S $D/ctrd/containerd.sock ] && for ns in k8s.io default; do
  for t in $(ctr --address $D/ctrd/containerd.sock -n $ns t ls -q 2>/dev/null); do ctr --address $D/ctrd/containerd.sock -n $ns t kill -s KILL $t; ctr --address $D/ctrd/containerd.sock -n $ns t rm -f $t; done
done
$D/bin/kube-proxy --cleanup >/dev/null 2>&1
stop $D/ctrd/pid
stop $D/cp/sched.pid; stop $D/cp/kcm.pid; stop $D/cp/apiserver.pid; stop $D/cp/etcd.pid
# leftovers: shims, mounts, bridge, netns, cgroups
pkill -P 1 -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $D/ctrd/containerd.sock" 2>/dev/null
grep " $D/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
ip link del cni-explore0 2>/dev/null
# the kubelet's own iptables chains (kube-proxy --cleanup does not remove them)
for t in filter nat mangle; do
  for ipt in iptables ip6tables; do
    $ipt -t $t -D INPUT -j KUBE-FIREWALL 2>/dev/null; $ipt -t $t -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
    for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do $ipt -t $t -F $c 2>/dev/null; $ipt -t $t -X $c 2>/dev/null; done
  done
done
rm -f /var/lib/cni/results/explore-* 2>/dev/null
for c in /sys/fs/cgroup/*/kubepods; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
echo "stop-all took $(echo "$(date +%s.%N)-$t0"|bc)s"
