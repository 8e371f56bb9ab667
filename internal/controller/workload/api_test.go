package workload

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var _ = Describe("Identity specs made from workload annotations", func() {
	ctx := context.Background()

	// Were the API to refuse a spec the annotations gave, the workload reconciler would fail to
	// write it on every pass, instead of reporting the bad annotation once.
	It("are accepted by the API server for every valid annotation set", func() {
		ns := newNamespace(ctx)
		n := 0
		for _, tc := range annotationCases {
			if tc.invalid != "" {
				continue
			}
			spec, err := specFromAnnotations(tc.targets, tc.ann)
			Expect(err).NotTo(HaveOccurred(), tc.name)
			si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("deployment-case-%d", n)}, Spec: *spec}
			Expect(k8s.Create(ctx, si, client.DryRunAll)).To(Succeed(), tc.name)
			n++
		}
		Expect(n).To(BeNumerically(">=", 10))
	})

	// The checks of specFromAnnotations mirror these refusals; each would otherwise be a spec the
	// reconciler writes again and again.
	It("refuses the specs the annotation checks keep out", func() {
		ns := newNamespace(ctx)
		acme := []scimv1.TargetReference{{Kind: scimv1.KindScimTarget, Name: "acme"}}
		ttl := func(s string) *scimv1.Duration { d := scimv1.Duration(s); return &d }
		targets := make([]scimv1.TargetReference, 33)
		for i := range targets {
			targets[i] = scimv1.TargetReference{Kind: scimv1.KindScimTarget, Name: fmt.Sprintf("t%d", i)}
		}
		groups := make([]string, 65)
		for i := range groups {
			groups[i] = fmt.Sprintf("g%d", i)
		}
		for name, spec := range map[string]scimv1.ServiceIdentitySpec{
			"a duplicated group (groups is a set)":     {TargetRefs: acme, Groups: []string{"readers", "readers"}},
			"33 targets":                               {TargetRefs: targets},
			"65 groups":                                {TargetRefs: acme, Groups: groups},
			"an owner with two @":                      {TargetRefs: acme, Owner: "a@b@example.com"},
			"an owner with a newline":                  {TargetRefs: acme, Owner: "team\n@example.com"},
			"a display name of 257 characters":         {TargetRefs: acme, DisplayName: strings.Repeat("a", 257)},
			"a zero ttl":                               {TargetRefs: acme, TTL: ttl("0s")},
			"a ttl Go parses and the pattern does not": {TargetRefs: acme, TTL: ttl("+1h")},
			"a ttl of 36 characters":                   {TargetRefs: acme, TTL: ttl("1.000000001h1.000000001m1.000000001s")},
		} {
			si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployment-refused"}, Spec: spec}
			err := k8s.Create(ctx, si, client.DryRunAll)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", name, err)
		}
	})
})
