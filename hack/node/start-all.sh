#!/usr/bin/env bash
# Fresh node + control plane under /tmp/node-explore, timed step by step.
set -euo pipefail
D=/tmp/node-explore
K=$HOME/.cache/scim-operator/k8s/1.37.2-linux-amd64
kc="$K/kubectl --kubeconfig $D/cp/kubeconfig"
T0=$(date +%s.%N); last=$T0
step() { local n; n=$(date +%s.%N); printf '%-40s %6.2fs (total %6.2fs)\n' "$1" "$(echo "$n-$last"|bc)" "$(echo "$n-$T0"|bc)"; last=$n; }
rm -rf $D/ctrd/root $D/ctrd/state $D/ctrd/runc $D/cp/etcd $D/kubelet/root $D/cni/ipam
mkdir -p $D/ctrd/root $D/ctrd/state $D/cp/etcd $D/kubelet/root
HOSTIP=$(cat $D/cp/hostip)
# containerd
(containerd --config $D/ctrd/config.toml > $D/ctrd/containerd.log 2>&1 & echo $! > $D/ctrd/pid)
until [ -S $D/ctrd/containerd.sock ]; do sleep 0.05; done
step containerd
for i in pause hello op; do ctr --address $D/ctrd/containerd.sock -n k8s.io images import --snapshotter native $D/img/$i.tar >/dev/null; done
step "import pause+hello+operator images"
# etcd + apiserver + kcm + scheduler
($K/etcd --data-dir $D/cp/etcd --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --unsafe-no-fsync > $D/cp/etcd.log 2>&1 & echo $! > $D/cp/etcd.pid)
cd $D/cp
($K/kube-apiserver --etcd-servers http://127.0.0.1:23790 --bind-address 0.0.0.0 --advertise-address $HOSTIP --secure-port 16443 --cert-dir certs --token-auth-file certs/tokens.csv --client-ca-file certs/ca.crt --authorization-mode Node,RBAC --service-account-issuer https://kubernetes.default.svc --service-account-key-file certs/sa.pub --service-account-signing-key-file certs/sa.key --service-cluster-ip-range 10.96.0.0/24 --allow-privileged=true --kubelet-preferred-address-types InternalIP --kubelet-client-certificate certs/kubelet-client.crt --kubelet-client-key certs/kubelet-client.key > apiserver.log 2>&1 & echo $! > apiserver.pid)
until curl -sk -H 'Authorization: Bearer admintoken' https://127.0.0.1:16443/readyz 2>/dev/null | grep -q '^ok$'; do sleep 0.1; done
step "etcd + kube-apiserver ready"
($K/kube-controller-manager --kubeconfig kubeconfig --authentication-kubeconfig kubeconfig --authorization-kubeconfig kubeconfig --controllers garbagecollector,namespace,serviceaccount,root-ca-cert-publisher,deployment,replicaset,endpointslice,endpointslicemirroring,nodelifecycle --root-ca-file certs/apiserver.crt --leader-elect=false --use-service-account-credentials=false --bind-address 127.0.0.1 --secure-port 0 -v 1 > kcm.log 2>&1 & echo $! > kcm.pid)
($D/bin/kube-scheduler --kubeconfig kubeconfig --authentication-kubeconfig kubeconfig --authorization-kubeconfig kubeconfig --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 > sched.log 2>&1 & echo $! > sched.pid)
step "kcm + scheduler started"
cd $D/kubelet
($D/bin/kubelet --config config.yaml --kubeconfig $D/cp/kubeconfig --root-dir $D/kubelet/root --cert-dir $D/kubelet/certs --hostname-override explore-node -v 2 > kubelet.log 2>&1 & echo $! > pid)
($D/bin/kube-proxy --config $D/proxy/config.yaml -v 2 > $D/proxy/proxy.log 2>&1 & echo $! > $D/proxy/pid)
until [ "$($kc get node explore-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}{.spec.taints}' 2>/dev/null)" = True ]; do sleep 0.2; done
step "kubelet: node Ready and untainted"
until $kc get sa default >/dev/null 2>&1; do sleep 0.2; done
step "default ServiceAccount"
H=$HOME/.cache/scim-operator/tools/helm-v4.3.1/helm
HELM_CACHE_HOME=$D/helm/cache HELM_CONFIG_HOME=$D/helm/config HELM_DATA_HOME=$D/helm/data $H install scim $D/src/charts/scim-operator --kubeconfig $D/cp/kubeconfig --namespace scim-system --create-namespace --set image.repository=localhost/scim-operator --set image.tag=e2e --set image.pullPolicy=Never --wait --timeout 120s >/dev/null
step "helm install --wait (2 operator Pods Ready)"
$kc -n scim-system get pods -o wide
