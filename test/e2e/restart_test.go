//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Each spec kills the operator (kill -9) at a named point of a revocation, or while a
// workload is deleted, or kills the leader of two replicas, and proves that afterwards the
// account is revoked and no account of a retired owner is ever active again.
var _ = Describe("Revocation across restarts and failover", Ordered, func() {
	ctx := context.Background()

	BeforeAll(func() {
		kubectl("create", "namespace", "retire")
		ensureCorpWide()
	})

	AfterEach(func() {
		scimSrv.Faults.Clear()
		if !operator.running() { // a spec that failed before restarting it
			operator.start()
		}
	})

	It("revokes after a restart when killed after the workload's deletion was seen, before any SCIM call", func() {
		identity := retiringServiceAccount("kill-before-call")
		killed := killOperatorAt(forAccount("retire", identity), false)
		kubectl("delete", "serviceaccount", "kill-before-call", "-n", "retire", "--wait=false")
		Eventually(killed, "30s").Should(BeClosed())
		Expect(accounts("retire", identity)).To(ConsistOf(HaveKeyWithValue("active", true)), "no call was served before the kill")

		operator.start()
		Eventually(goneIdentity("retire", identity), "60s").Should(BeTrue())
		Expect(accounts("retire", identity)).To(BeEmpty())
	})

	It("revokes after a restart when killed between the deactivation and the deletion", func() {
		identity := retiringServiceAccount("kill-mid-revocation")
		account := forAccount("retire", identity)
		deactivation := func(r *http.Request) bool {
			return account(r) && (r.Method == http.MethodPatch || r.Method == http.MethodPut)
		}
		killed := killOperatorAt(deactivation, true)
		kubectl("delete", "serviceaccount", "kill-mid-revocation", "-n", "retire", "--wait=false")
		Eventually(killed, "30s").Should(BeClosed())
		Expect(accounts("retire", identity)).To(ConsistOf(HaveKeyWithValue("active", false)), "deactivated, not deleted, at the kill")

		active := watchActive("retire", identity)
		operator.start()
		Eventually(goneIdentity("retire", identity), "60s").Should(BeTrue())
		Expect(accounts("retire", identity)).To(BeEmpty())
		Expect(active()).To(BeZero(), "the account was active again after the restart")
	})

	It("keeps the account revoked after a restart inside the grace window (revoked on the target, nothing recorded yet)", func() {
		// An identity the user wrote, owned by a ServiceAccount without annotations: the
		// workload controller leaves it alone, so with orphan propagation it stays, and only
		// what the operator recorded or can find out from state keeps it from being provisioned
		// again (a POST after the 404).
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "retire", Name: "grace"}}
		Expect(k8s.Create(ctx, sa)).To(Succeed())
		identity := "kill-in-grace"
		si := &scimv1.ServiceIdentity{
			ObjectMeta: metav1.ObjectMeta{Namespace: "retire", Name: identity, OwnerReferences: []metav1.OwnerReference{
				{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}}},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: "corp-wide"}}},
		}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(ready("retire", identity), "30s").Should(HavePrefix(isReady))

		account := forAccount("retire", identity)
		deletion := func(r *http.Request) bool { return account(r) && r.Method == http.MethodDelete }
		killed := killOperatorAt(deletion, true)
		kubectl("delete", "serviceaccount", "grace", "-n", "retire", "--cascade=orphan")
		Eventually(killed, "30s").Should(BeClosed())
		Expect(accounts("retire", identity)).To(BeEmpty(), "deleted on the target at the kill")
		Expect(ready("retire", identity)()).To(HavePrefix(isReady), "nothing recorded on the identity at the kill")

		active := watchActive("retire", identity)
		operator.start()
		Eventually(ready("retire", identity), "60s").Should(HavePrefix("False/OwnerDeleted"))
		Consistently(func() []map[string]any { return accounts("retire", identity) }, "2s").Should(BeEmpty())
		Expect(active()).To(BeZero(), "the account was provisioned again after the restart")
	})

	It("revokes a workload deleted with --cascade=orphan while the operator was down", func() {
		identity := retiringServiceAccount("leaver")
		operator.stop(syscall.SIGKILL)
		kubectl("delete", "serviceaccount", "leaver", "-n", "retire", "--cascade=orphan")
		// The garbage collector orphans the identity: its ownerReference goes, it stays.
		Eventually(func(g Gomega) {
			si := &scimv1.ServiceIdentity{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "retire", Name: identity}, si)).To(Succeed())
			g.Expect(si.OwnerReferences).To(BeEmpty())
		}, "60s").Should(Succeed())
		Expect(accounts("retire", identity)).To(HaveLen(1), "nothing revoked it while the operator was down")

		operator.start()
		Eventually(func() []map[string]any { return accounts("retire", identity) }, "60s").Should(BeEmpty())
		Eventually(ready("retire", identity), "30s").Should(HavePrefix("False/OwnerDeleted"))
		Consistently(func() []map[string]any { return accounts("retire", identity) }, "2s").Should(BeEmpty(),
			"and it is not provisioned again")
	})

	DescribeTable("revokes a workload deleted while the operator was down, whatever the propagation",
		func(name, cascade string) {
			identity := retiringServiceAccount(name)
			operator.stop(syscall.SIGKILL)
			kubectl("delete", "serviceaccount", name, "-n", "retire", "--cascade="+cascade, "--wait=false")
			// The garbage collector starts deleting the identity; its finalizer holds it.
			Eventually(func(g Gomega) {
				si := &scimv1.ServiceIdentity{}
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "retire", Name: identity}, si)).To(Succeed())
				g.Expect(si.DeletionTimestamp).NotTo(BeNil())
			}, "60s").Should(Succeed())
			Expect(accounts("retire", identity)).To(HaveLen(1), "nothing revoked it while the operator was down")

			operator.start()
			Eventually(goneIdentity("retire", identity), "60s").Should(BeTrue())
			Expect(accounts("retire", identity)).To(BeEmpty())
		},
		Entry("background", "leaver-bg", "background"),
		Entry("foreground", "leaver-fg", "foreground"),
	)

	It("deprovisions an account whose targetRef was removed while the operator was down right after creating it", func() {
		created := func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/Users")
		}
		killed := killOperatorAt(created, true)
		createIdentity("retire", "late-ref", scimv1.KindClusterScimTarget, "corp-wide")
		Eventually(killed, "30s").Should(BeClosed())
		Expect(accounts("retire", "late-ref")).To(HaveLen(1), "created at the kill")
		scimSrv.Faults.Clear()

		// While the operator is down, the spec stops naming the target.
		si := &scimv1.ServiceIdentity{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "retire", Name: "late-ref"}, si)).To(Succeed())
		si.Spec.TargetRefs = []scimv1.TargetReference{{Kind: scimv1.KindScimTarget, Name: "nowhere"}}
		Expect(k8s.Update(ctx, si)).To(Succeed())

		operator.start()
		Eventually(func() []map[string]any { return accounts("retire", "late-ref") }, "60s").Should(BeEmpty())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(ConsistOf(HaveField("Name", "nowhere")))
		}, "30s").Should(Succeed())
	})

	It("finishes a mass revocation on the standby replica when the leader is killed mid-way (leader election)", func() {
		const n = 200
		kubectl("create", "namespace", "failover")
		var yaml strings.Builder
		for i := range n {
			fmt.Fprintf(&yaml, "---\napiVersion: scim.nhi.dev/v1alpha1\nkind: ServiceIdentity\nmetadata: {name: bot-%03d, namespace: failover}\nspec:\n  targetRefs: [{kind: ClusterScimTarget, name: corp-wide}]\n", i)
		}
		applyStdin(yaml.String())
		prefix := clusterID + "/failover/"
		live := func() int {
			return len(scimSrv.UsersWhereFunc(func(u map[string]any) bool {
				ext, _ := u["externalId"].(string)
				return strings.HasPrefix(ext, prefix)
			}))
		}
		Eventually(func(g Gomega) {
			list := &scimv1.ServiceIdentityList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace("failover"))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(n))
			for _, si := range list.Items {
				g.Expect(meta.IsStatusConditionTrue(si.Status.Conditions, "Ready")).To(BeTrue(), si.Name)
			}
		}, "180s", "500ms").Should(Succeed())
		Expect(live()).To(Equal(n))

		standby := &operatorProcess{bin: operator.bin, kubeconfig: operator.kubeconfig, name: "standby"}
		standby.start()
		DeferCleanup(standby.stop, syscall.SIGTERM)
		Eventually(standby.logText, "30s").Should(MatchRegexp("(?i)attempting to acquire leader lease"))

		// Deletions take 300 ms, as on a slow provider, so the kill lands mid-way.
		scimSrv.Faults.Add(scimserver.On(http.MethodDelete, "/Users", scimserver.Fault{Latency: 300 * time.Millisecond}))
		kubectl("delete", "serviceidentities", "--all", "-n", "failover", "--wait=false")
		Eventually(live, "60s", "1ms").Should(BeNumerically("<=", n-20))
		operator.stop(syscall.SIGKILL)
		killedAt := time.Now()
		left := live()
		Expect(left).To(BeNumerically(">", 0), "the kill came too late to prove anything")

		Eventually(live, "120s", "10ms").Should(BeZero())
		took := time.Since(killedAt)
		fmt.Printf("leader failover: leader killed with %d of %d accounts left; the standby revoked them all %s after the kill\n",
			left, n, took.Round(10*time.Millisecond))
		Eventually(func(g Gomega) {
			list := &scimv1.ServiceIdentityList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace("failover"))).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}, "60s").Should(Succeed())
		Expect(standby.logText()).To(MatchRegexp("(?i)successfully acquired lease"))
	})
})

// retiringServiceAccount creates a ServiceAccount in namespace retire whose identity has an
// account on corp-wide, and returns the identity's name.
func retiringServiceAccount(name string) string {
	GinkgoHelper()
	applyStdin(fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: %s
  namespace: retire
  annotations: {scim.nhi.dev/targets: ClusterScimTarget/corp-wide}
`, name))
	identity := "serviceaccount-" + name
	Eventually(ready("retire", identity), "30s").Should(HavePrefix(isReady))
	Expect(accounts("retire", identity)).To(HaveLen(1))
	return identity
}

// forAccount matches the SCIM requests about an identity's account: lookups by its externalId
// and calls on its id.
func forAccount(ns, name string) func(*http.Request) bool {
	GinkgoHelper()
	list := accounts(ns, name)
	Expect(list).To(HaveLen(1))
	id, _ := list[0]["id"].(string)
	ext := externalID(ns, name)
	return func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, "/Users/"+id) || strings.Contains(r.URL.Query().Get("filter"), ext)
	}
}

// killOperatorAt kills the operator (kill -9) at the first request that matches: when it
// arrives, unserved (served false), or once it was served, before the operator hears back
// (served true). The channel closes when the operator is dead. Matching requests that arrive
// meanwhile are dropped unserved (their sender is dying); later ones are served.
func killOperatorAt(match func(*http.Request) bool, served bool) <-chan struct{} {
	killed := make(chan struct{})
	var fired atomic.Bool
	kill := func() {
		operator.stop(syscall.SIGKILL)
		close(killed)
	}
	scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
		if !match(r) {
			return nil
		}
		if !fired.CompareAndSwap(false, true) {
			select {
			case <-killed:
				return nil // sent after the kill: by the next operator process
			default:
				<-killed
				return &scimserver.Fault{ResetBeforeServing: true}
			}
		}
		if served {
			return &scimserver.Fault{Served: kill}
		}
		return &scimserver.Fault{Arrived: kill, ResetBeforeServing: true}
	})
	return killed
}

// watchActive polls the SCIM server until its result is read, counting the polls that found
// an active account of the identity.
func watchActive(ns, name string) func() int {
	var seen atomic.Int32
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, u := range accounts(ns, name) {
					if u["active"] != false {
						seen.Add(1)
					}
				}
			}
		}
	}()
	return func() int {
		close(done)
		<-stopped
		return int(seen.Load())
	}
}
