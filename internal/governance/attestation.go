package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/util/cache"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// An attestation (annotation scim.nhi.dev/reviewed-at) counts only when the user who set it may
// review the identity: the `review` verb on serviceidentities, asked of the API server with a
// SubjectAccessReview for the user and groups recorded in scim.nhi.dev/reviewed-by and
// scim.nhi.dev/reviewed-by-groups. Those annotations are written from the request by
// config/admission's review-attestation MutatingAdmissionPolicy (and checked against it by its
// ValidatingAdmissionPolicy); without either policy they are whatever the writer said.

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

const (
	// reviewerAnswerTTL is how long a SubjectAccessReview answer is reused.
	reviewerAnswerTTL = time.Minute
	// reviewerRetry is when an attestation whose check failed is checked again.
	reviewerRetry = 30 * time.Second
	// maxReviewerGroups bounds the groups sent in one SubjectAccessReview.
	maxReviewerGroups = 256
)

// reviewerAnswers caches SubjectAccessReview answers (bounded, each for reviewerAnswerTTL), so a
// resync does not cost an API call per identity. Shared by the reconcilers of this process.
var reviewerAnswers = cache.NewLRUExpireCache(4096)

type reviewerAnswer struct{ allowed bool }

// attester is who set an identity's reviewed-at, as recorded on it.
type attester struct {
	user   string
	groups []string
	raw    string // the groups annotation as written (cache key)
}

func attesterOf(annotations map[string]string) attester {
	a := attester{user: annotations[scimv1.ReviewedByAnnotation], raw: annotations[scimv1.ReviewedByGroupsAnnotation]}
	if a.raw != "" && json.Unmarshal([]byte(a.raw), &a.groups) != nil {
		a.groups = nil // unreadable: checked as the user alone
	}
	if len(a.groups) > maxReviewerGroups {
		a.groups = a.groups[:maxReviewerGroups]
	}
	return a
}

// mayReview says whether the attester may review the identity (the `review` verb), and if not,
// why the attestation is ignored. err: the API server could not be asked.
func (g *Governor) mayReview(ctx context.Context, si *scimv1.ServiceIdentity, a attester, value string) (string, error) {
	if a.user == "" {
		return fmt.Sprintf("annotation %s=%q has no annotation %s naming who attested; it is ignored "+
			"(config/admission's review-attestation policy records it)", scimv1.ReviewedAtAnnotation, value, scimv1.ReviewedByAnnotation), nil
	}
	key := strings.Join([]string{si.Namespace, si.Name, a.user, a.raw}, "\x00")
	ans, ok := reviewerAnswers.Get(key)
	if !ok {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: a.user, Groups: a.groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: si.Namespace, Name: si.Name, Verb: scimv1.ReviewVerb,
				Group: scimv1.GroupVersion.Group, Resource: "serviceidentities",
			},
		}}
		if err := g.Client.Create(ctx, sar); err != nil {
			return "", fmt.Errorf("checking whether %q may review: %w", a.user, err)
		}
		ans = reviewerAnswer{allowed: sar.Status.Allowed && !sar.Status.Denied}
		reviewerAnswers.Add(key, ans, reviewerAnswerTTL)
	}
	if ans := ans.(reviewerAnswer); !ans.allowed {
		return fmt.Sprintf("annotation %s=%q was set by %q, who may not review serviceidentity %s/%s "+
			"(the %q verb on serviceidentities.%s); it is ignored", scimv1.ReviewedAtAnnotation, value, a.user,
			si.Namespace, si.Name, scimv1.ReviewVerb, scimv1.GroupVersion.Group), nil
	}
	return "", nil
}
