package controller

import (
	"context"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The cache cmd/main.go builds with --watch-namespaces (ConfigureManager, then WatchNamespaces),
// on the suite's kube-apiserver.
var _ = Describe("--watch-namespaces", func() {
	It("caches namespaced objects of the watched and the cluster-resource namespaces only, cluster-scoped kinds everywhere", func(ctx SpecContext) {
		watched, other := newNamespace(ctx), newNamespace(ctx)
		name := "watch-probe-" + watched
		for _, ns := range []string{watched, other, operatorNS} {
			Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
		}

		opts := ctrl.Options{}
		ConfigureManager(&opts)
		WatchNamespaces(&opts, []string{watched}, operatorNS)
		co := opts.Cache
		co.Scheme = testScheme
		c, err := cache.New(testEnv.Config, co)
		Expect(err).NotTo(HaveOccurred())
		cacheCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() {
			defer GinkgoRecover()
			Expect(c.Start(cacheCtx)).To(Succeed())
		}()

		namespacesOf := func(list client.ObjectList, items func() []client.Object) func(g Gomega) []string {
			return func(g Gomega) []string {
				g.Expect(c.List(ctx, list)).To(Succeed())
				var out []string
				for _, o := range items() {
					if o.GetName() == name {
						out = append(out, o.GetNamespace())
					}
				}
				slices.Sort(out)
				return out
			}
		}
		want := []string{watched, operatorNS}
		slices.Sort(want)

		accounts := &corev1.ServiceAccountList{}
		Eventually(namespacesOf(accounts, func() []client.Object {
			var out []client.Object
			for i := range accounts.Items {
				out = append(out, &accounts.Items[i])
			}
			return out
		})).Should(Equal(want))
		Expect(c.Get(ctx, types.NamespacedName{Namespace: other, Name: name}, &corev1.ServiceAccount{})).
			To(MatchError(ContainSubstring("unknown namespace")))

		namespaces := &corev1.NamespaceList{}
		Eventually(func(g Gomega) []string {
			g.Expect(c.List(ctx, namespaces)).To(Succeed())
			var out []string
			for _, ns := range namespaces.Items {
				out = append(out, ns.Name)
			}
			return out
		}).Should(ContainElements(watched, other, operatorNS))
	})
})
