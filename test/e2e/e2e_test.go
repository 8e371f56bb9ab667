//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func externalID(ns, name string) string { return clusterID + "/" + ns + "/" + name }

func accounts(ns, name string) []map[string]any {
	return scimSrv.UsersWhere("externalId", externalID(ns, name))
}

// ready reports "<status>/<reason>: <message>" of an identity's Ready condition.
func ready(ns, name string) func() string {
	return func() string {
		si := &scimv1.ServiceIdentity{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, si); err != nil {
			return err.Error()
		}
		if c := meta.FindStatusCondition(si.Status.Conditions, "Ready"); c != nil {
			return string(c.Status) + "/" + c.Reason + ": " + c.Message
		}
		return "no Ready condition"
	}
}

const isReady = "True/Provisioned"

func goneIdentity(ns, name string) func() bool {
	return func() bool {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &scimv1.ServiceIdentity{})
		return apierrors.IsNotFound(err)
	}
}

// writes counts the SCIM requests that change something.
func writes() int {
	n := 0
	for k, v := range scimSrv.RequestCounts() {
		if !strings.HasPrefix(k, "GET ") {
			n += v
		}
	}
	return n
}

// revocation deletes a workload with kubectl and measures until its account is gone.
func revocation(kind, name, identity string) time.Duration {
	GinkgoHelper()
	Expect(accounts("payments", identity)).To(HaveLen(1))
	start := time.Now()
	kubectl("delete", kind, name, "-n", "payments", "--wait=false")
	Eventually(func() []map[string]any { return accounts("payments", identity) }, "30s", "5ms").Should(BeEmpty())
	took := time.Since(start)
	Eventually(goneIdentity("payments", identity)).Should(BeTrue())
	return took
}

var _ = Describe("The examples, installed as users install them", Ordered, func() {
	ctx := context.Background()
	samples := filepath.Join("..", "..", "config", "samples")

	It("applies config/samples verbatim and provisions every story", func() {
		kubectl("apply", "-k", samples)
		for _, name := range []string{"billing-exporter", "serviceaccount-ledger-sync", "deployment-fraud-agent", "reporting-bot"} {
			Eventually(ready("payments", name)).Should(HavePrefix(isReady), name)
			Expect(accounts("payments", name)).To(HaveLen(1), name)
		}
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "scimtarget/acme", "-n", "payments")
		kubectl("wait", "--for=condition=Ready", "--timeout=60s", "clusterscimtarget/corp")
		Expect(accounts("payments", "deployment-fraud-agent")[0]["displayName"]).To(Equal("Fraud triage agent"))
		Expect(accounts("payments", "reporting-bot")[0]["userType"]).To(Equal("Agent"))
		Expect(scimSrv.Groups.All()).To(ContainElement(HaveKeyWithValue("displayName", "payments-readers")))
	})

	It("refuses the cluster target to a namespace it does not allow", func() {
		kubectl("create", "namespace", "outsiders")
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "outsiders", Name: "sneaky"},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: "corp"}}}}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Expect(si.Finalizers).To(ConsistOf(scimv1.DeprovisionFinalizer), "set at creation by config/admission's MutatingAdmissionPolicy")
		Eventually(ready("outsiders", "sneaky")).Should(HavePrefix("False/NamespaceNotAllowed"))
		Expect(accounts("outsiders", "sneaky")).To(BeEmpty())
	})

	It("treats re-applying the same YAML as a no-op", func() {
		// kubectl prints "configured" for Secrets with stringData and for lists whose items the
		// schema defaults (targetRefs[].kind): its client-side patch resends them. What matters
		// is that nothing changes: no resourceVersion moves and no SCIM write happens.
		versions := func() map[string]string {
			out := map[string]string{}
			lists := []client.ObjectList{&scimv1.ServiceIdentityList{}, &scimv1.ScimTargetList{}, &scimv1.ClusterScimTargetList{}, &corev1.SecretList{}}
			for _, l := range lists {
				Expect(k8s.List(ctx, l)).To(Succeed())
				Expect(meta.EachListItem(l, func(o runtime.Object) error {
					obj := o.(client.Object)
					out[fmt.Sprintf("%T %s/%s", o, obj.GetNamespace(), obj.GetName())] = obj.GetResourceVersion()
					return nil
				})).To(Succeed())
			}
			return out
		}
		// Settled first: a target's identity count follows identity changes a second later.
		var before map[string]string
		Eventually(func(g Gomega) {
			before = versions()
			g.Consistently(versions, "1500ms", "250ms").Should(Equal(before))
		}, "30s").Should(Succeed())
		w := writes()
		kubectl("apply", "-k", samples)
		Consistently(writes, "3s").Should(Equal(w))
		Expect(versions()).To(Equal(before))
	})

	It("removes the account when the Deployment or ServiceAccount is deleted (real garbage collection)", func() {
		d := revocation("deployment", "fraud-agent", "deployment-fraud-agent")
		s := revocation("serviceaccount", "ledger-sync", "serviceaccount-ledger-sync")
		msg := fmt.Sprintf("revocation latency: Deployment deleted -> account gone %s; ServiceAccount deleted -> account gone %s",
			d.Round(time.Millisecond), s.Round(time.Millisecond))
		fmt.Println(msg)
		AddReportEntry("revocation latency", msg)
	})

	It("holds finalizers while the SCIM server is down and finishes when it is back", func() {
		kubectl("create", "namespace", "outage")
		ensureCorpWide()
		names := []string{"one", "two", "three"}
		for _, name := range names {
			createIdentity("outage", name, "ClusterScimTarget", "corp-wide")
		}
		for _, name := range names {
			Eventually(ready("outage", name)).Should(HavePrefix(isReady))
		}
		scimSrv.Stop()
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				Expect(scimSrv.Start(scimAddr)).To(Succeed())
			}
		})
		kubectl("delete", "serviceidentities", "--all", "-n", "outage", "--wait=false")
		for _, name := range names {
			Eventually(ready("outage", name)).Should(And(HavePrefix("False/DeprovisionBlocked"), ContainSubstring("connection refused")))
			si := &scimv1.ServiceIdentity{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "outage", Name: name}, si)).To(Succeed())
			Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
		}
		Expect(scimSrv.Start(scimAddr)).To(Succeed())
		restarted = true
		for _, name := range names {
			Eventually(goneIdentity("outage", name), "90s").Should(BeTrue())
			Expect(accounts("outage", name)).To(BeEmpty())
		}
	})

	It("creates every account exactly once when the operator is killed mid-way and restarted", func() {
		kubectl("create", "namespace", "burst")
		ensureCorpWide()
		const n = 50
		var names []string
		var yaml strings.Builder
		for i := range n {
			name := fmt.Sprintf("bot-%02d", i)
			names = append(names, name)
			fmt.Fprintf(&yaml, "---\napiVersion: scim.nhi.dev/v1alpha1\nkind: ServiceIdentity\nmetadata: {name: %s, namespace: burst}\nspec:\n  targetRefs: [{kind: ClusterScimTarget, name: corp-wide}]\n", name)
		}
		count := func() int {
			c := 0
			for _, name := range names {
				c += len(accounts("burst", name))
			}
			return c
		}
		// Slow creates down so the kill lands mid-way, with POSTs in flight.
		scimSrv.Faults.Add(scimserver.On(http.MethodPost, "/Users", scimserver.Fault{Latency: 100 * time.Millisecond}))
		base := scimSrv.Users.Len()
		applied := make(chan struct{})
		go func() { // kubectl takes a while for 50 objects; the operator starts on the first ones
			defer GinkgoRecover()
			defer close(applied)
			applyStdin(yaml.String())
		}()
		Eventually(func() int { return scimSrv.Users.Len() - base }, "60s", "1ms").Should(BeNumerically(">=", 10))
		operator.stop(syscall.SIGKILL)
		killedAt := count()
		Eventually(applied).Should(BeClosed())
		scimSrv.Faults.Clear()
		fmt.Printf("operator killed with %d of %d accounts created\n", killedAt, n)
		Expect(killedAt).To(BeNumerically("<", n), "the kill came too late to prove anything")
		operator.start()
		for _, name := range names {
			Eventually(ready("burst", name), "120s").Should(HavePrefix(isReady), name)
		}
		for _, name := range names {
			Expect(accounts("burst", name)).To(HaveLen(1), name)
		}
	})

	It("finishes deleting a namespace by itself and leaves no active account behind", func() {
		kubectl("delete", "namespace", "payments", "--wait=false")
		Eventually(func() bool {
			err := k8s.Get(ctx, client.ObjectKey{Name: "payments"}, &corev1.Namespace{})
			return apierrors.IsNotFound(err)
		}, "120s").Should(BeTrue())
		var left []string
		for _, u := range scimSrv.Users.All() {
			ext, _ := u["externalId"].(string)
			if strings.HasPrefix(ext, clusterID+"/payments/") && u["active"] != false {
				left = append(left, ext)
			}
		}
		sort.Strings(left)
		Expect(left).To(BeEmpty())
		Expect(accounts("payments", "billing-exporter")).To(BeEmpty())
		// reporting-bot's target says Deactivate: its account stays, inactive.
		bot := accounts("payments", "reporting-bot")
		Expect(bot).To(HaveLen(1))
		Expect(bot[0]["active"]).To(BeFalse())
	})
})

// ensureCorpWide applies a ClusterScimTarget open to every namespace, reading the secret of
// example 04 from the operator's namespace.
func ensureCorpWide() {
	GinkgoHelper()
	applyStdin(`apiVersion: v1
kind: Secret
metadata: {name: corp-idp-token, namespace: scim-operator-system}
stringData: {token: dev-token}
---
apiVersion: scim.nhi.dev/v1alpha1
kind: ClusterScimTarget
metadata: {name: corp-wide}
spec:
  endpoint: http://127.0.0.1:18080/scim/v2
  allowInsecureHTTP: true
  auth: {bearerToken: {secretKeyRef: {name: corp-idp-token, key: token}}}
  allowedNamespaces: {selector: {}}   # every namespace (unset would allow none)
`)
	kubectl("wait", "--for=condition=Ready", "--timeout=60s", "clusterscimtarget/corp-wide")
}

func createIdentity(ns, name, kind, target string) {
	GinkgoHelper()
	applyStdin(fmt.Sprintf("apiVersion: scim.nhi.dev/v1alpha1\nkind: ServiceIdentity\nmetadata: {name: %s, namespace: %s}\nspec:\n  targetRefs: [{kind: %s, name: %s}]\n",
		name, ns, kind, target))
}

func applyStdin(yaml string) {
	GinkgoHelper()
	cmd := cp.Kubectl(context.Background(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}
