package governance

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// The review part of the governance verdict, case by case: when the identity is overdue, how
// soon it is looked at again, and which attestations count. Reviewers named "alice" may review
// (the SubjectAccessReview allows them); anyone else may not.
func TestReviewVerdict(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	sar := func(_ context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if r, ok := obj.(*authorizationv1.SubjectAccessReview); ok {
			r.Status.Allowed = r.Spec.User == "alice"
			return nil
		}
		return c.Create(context.Background(), obj, opts...)
	}
	scheme := runtime.NewScheme()
	_ = authorizationv1.AddToScheme(scheme)
	g := &Governor{Client: fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{Create: sar}).Build(),
		Recorder: events.NewFakeRecorder(100), Clock: clocktesting.NewFakePassiveClock(now)}
	hourly := Policy{review: time.Hour, reviewBy: "ScimTarget/t/acme"}
	attested := func(at string, by string) map[string]string {
		return map[string]string{scimv1.ReviewedAtAnnotation: at, scimv1.ReviewedByAnnotation: by}
	}
	for i, tc := range []struct {
		name        string
		created     time.Duration // ago
		annotations map[string]string
		policy      Policy
		overdue     bool
		wake        time.Duration
		message     string
	}{
		{name: "no review asked", created: 48 * time.Hour, policy: Policy{}},
		{name: "created half an hour ago", created: 30 * time.Minute, policy: hourly, wake: 30 * time.Minute},
		{name: "never attested, created two hours ago", created: 2 * time.Hour, policy: hourly, overdue: true},
		{name: "attested ten minutes ago by a reviewer", created: 2 * time.Hour, policy: hourly,
			annotations: attested(now.Add(-10*time.Minute).Format(time.RFC3339), "alice"), wake: 50 * time.Minute},
		{name: "attested by someone who may not review", created: 2 * time.Hour, policy: hourly,
			annotations: attested(now.Add(-10*time.Minute).Format(time.RFC3339), "mallory"), overdue: true, message: "may not review"},
		{name: "attested in the future", created: 2 * time.Hour, policy: hourly,
			annotations: attested(now.Add(time.Hour).Format(time.RFC3339), "alice"), overdue: true, message: "in the future"},
		{name: "attested with a time that does not parse", created: 2 * time.Hour, policy: hourly,
			annotations: attested("yesterday", "alice"), overdue: true, message: "not an RFC 3339 time"},
		{name: "attested with nobody named", created: 2 * time.Hour, policy: hourly,
			annotations: map[string]string{scimv1.ReviewedAtAnnotation: now.Format(time.RFC3339)}, overdue: true, message: "naming who attested"},
	} {
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "id" + string(rune('a'+i)),
			CreationTimestamp: metav1.NewTime(now.Add(-tc.created)), Annotations: tc.annotations}}
		why, reason, wake := g.Verdict(context.Background(), si, tc.policy, false)
		if (why != "") != tc.overdue || (tc.overdue && reason != scimv1.ReasonReviewOverdue) {
			t.Errorf("%s: verdict %q (%s), want overdue=%v", tc.name, why, reason, tc.overdue)
		}
		if !tc.overdue && wake != tc.wake {
			t.Errorf("%s: looked at again in %s, want %s", tc.name, wake, tc.wake)
		}
		if tc.message != "" && (si.Status.Review == nil || !strings.Contains(si.Status.Review.Message, tc.message)) {
			t.Errorf("%s: status.review %+v does not say %q", tc.name, si.Status.Review, tc.message)
		}
		if tc.policy.review == 0 && si.Status.Review != nil {
			t.Errorf("%s: status.review recorded without a review policy", tc.name)
		}
	}
}
