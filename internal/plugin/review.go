package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

const (
	reviewedAtKey    = scimv1.ReviewedAtAnnotation
	revokedReasonKey = scimv1.RevokedReasonAnnotation
)

// reviewTime is the attested time: --at (RFC 3339, not after now) or now, in UTC with second
// precision as the annotation stores it.
func reviewTime(at string, now time.Time) (time.Time, error) {
	if at == "" {
		return now.UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %q is not an RFC 3339 time (e.g. 2026-11-25T09:00:00Z)", at)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("--at %s is in the future: a review attests what was checked, not what will be", at)
	}
	return t.UTC(), nil
}

var selfSubjectReviews = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "selfsubjectreviews"}

// whoAmI is the user name and groups the API server authenticates the plugin as (a
// SelfSubjectReview), the groups as the JSON array config/admission's review-attestation policy
// writes: the reviewer names itself, which that policy requires where it cannot record it.
func whoAmI(ctx context.Context, dyn dynamic.Interface) (user, groups string, err error) {
	ssr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}}
	out, err := dyn.Resource(selfSubjectReviews).Create(ctx, ssr, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("asking the API server who attests (SelfSubjectReview): %w", err)
	}
	user, _, _ = unstructured.NestedString(out.Object, "status", "userInfo", "username")
	list, _, _ := unstructured.NestedStringSlice(out.Object, "status", "userInfo", "groups")
	if list == nil {
		list = []string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as the policy's CEL writes it
	if err := enc.Encode(list); err != nil {
		return "", "", err
	}
	return user, strings.TrimSuffix(b.String(), "\n"), nil
}

var selfSubjectAccessReviews = schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "selfsubjectaccessreviews"}

// mayReview asks the API server whether the plugin's user may review the identity: an
// attestation by anyone else is ignored by the operator (and refused by config/admission).
func mayReview(ctx context.Context, dyn dynamic.Interface, ns, name string) error {
	ssar := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
		"spec": map[string]any{"resourceAttributes": map[string]any{"namespace": ns, "name": name, "verb": scimv1.ReviewVerb,
			"group": scimv1.GroupVersion.Group, "resource": identities.Resource}}}}
	out, err := dyn.Resource(selfSubjectAccessReviews).Create(ctx, ssar, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("asking the API server whether you may review serviceidentity %s/%s: %w", ns, name, err)
	}
	if ok, _, _ := unstructured.NestedBool(out.Object, "status", "allowed"); !ok {
		return fmt.Errorf("forbidden: you may not review serviceidentity %s/%s: an attestation needs the %q verb on serviceidentities (group %s), "+
			"e.g. through ClusterRole scim-operator-serviceidentity-reviewer-role; the operator ignores one by anyone else",
			ns, name, scimv1.ReviewVerb, scimv1.GroupVersion.Group)
	}
	return nil
}

// annotationPatch is a JSON merge patch that sets (or, for a nil value, removes) annotations,
// plus the given spec fields.
func mergePatch(annotations map[string]*string, spec map[string]any) ([]byte, error) {
	p := map[string]any{}
	if len(annotations) > 0 {
		p["metadata"] = map[string]any{"annotations": annotations}
	}
	if len(spec) > 0 {
		p["spec"] = spec
	}
	return json.Marshal(p)
}

func newReviewCommand(o *Options) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "review NAME",
		Short: "Record that a ServiceIdentity's access was reviewed and is still justified",
		Long: `review sets the annotation ` + reviewedAtKey + ` on the identity to the time of the review (now, or
--at, which may not be in the future), and names the reviewer (you, as the API server authenticates
you) in ` + scimv1.ReviewedByAnnotation + ` and ` + scimv1.ReviewedByGroupsAnnotation + `. The operator takes
it only when you may review the identity: the ` + "`" + scimv1.ReviewVerb + "`" + ` verb on serviceidentities
(ClusterRole scim-operator-serviceidentity-reviewer-role). It records it on status.review and computes
the next review from spec.review.every (or the target's default); an identity overdue for review is
suspended until attested again.`,
		Example: `  kubectl scim review billing-bot -n team-a
  kubectl scim review billing-bot -n team-a --at 2026-11-24T16:00:00Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := o.now()
			t, err := reviewTime(at, now)
			if err != nil {
				return err
			}
			dyn, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			id, err := getIdentity(cmd.Context(), dyn, ns, args[0])
			if err != nil {
				return err
			}
			if id.DeletionTimestamp != nil {
				return fmt.Errorf("serviceidentity %s/%s is being deleted: there is no access left to review", ns, id.Name)
			}
			if err := mayReview(cmd.Context(), dyn, ns, id.Name); err != nil {
				return err
			}
			value := t.Format(time.RFC3339Nano)
			user, groups, err := whoAmI(cmd.Context(), dyn)
			if err != nil {
				return err
			}
			patch, err := mergePatch(map[string]*string{reviewedAtKey: &value,
				scimv1.ReviewedByAnnotation: &user, scimv1.ReviewedByGroupsAnnotation: &groups}, nil)
			if err != nil {
				return err
			}
			if _, err := dyn.Resource(identities).Namespace(ns).Patch(cmd.Context(), id.Name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				return fmt.Errorf("recording the review of %s/%s: %w", ns, id.Name, err)
			}
			_, err = fmt.Fprintf(o.Out, "serviceidentity %s/%s reviewed at %s by %s (annotation %s)\n", ns, id.Name, value, clean(user, 256), reviewedAtKey)
			if err == nil && id.Spec.Owner != "" {
				_, err = fmt.Fprintf(o.Out, "owner: %s\n", clean(id.Spec.Owner, 256))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "Time of the review, RFC 3339 (default: now); may not be in the future")
	return cmd
}
