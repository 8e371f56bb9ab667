package plugin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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
--at, which may not be in the future). The operator records it on status.review and computes the next
review from spec.review.every (or the target's default); an identity overdue for review is suspended
until attested again.`,
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
			value := t.Format(time.RFC3339Nano)
			patch, err := mergePatch(map[string]*string{reviewedAtKey: &value}, nil)
			if err != nil {
				return err
			}
			if _, err := dyn.Resource(identities).Namespace(ns).Patch(cmd.Context(), id.Name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				return fmt.Errorf("recording the review of %s/%s: %w", ns, id.Name, err)
			}
			_, err = fmt.Fprintf(o.Out, "serviceidentity %s/%s reviewed at %s (annotation %s)\n", ns, id.Name, value, reviewedAtKey)
			if err == nil && id.Spec.Owner != "" {
				_, err = fmt.Fprintf(o.Out, "owner: %s\n", clean(id.Spec.Owner, 256))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "Time of the review, RFC 3339 (default: now); may not be in the future")
	return cmd
}
