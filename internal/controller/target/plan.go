package target

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// summarizePlan puts on a target in Observe mode what the operator would do there: the
// identities' planned actions (their status.targets[].plan), the orphans of the last sweep and
// what the orphan policy would do to them, and the circuit breaker's verdict on the planned
// deactivations and deletions. In Enforce mode there is no plan.
func (r *Reconciler) summarizePlan(ctx context.Context, t *targets.Target) error {
	if t.Spec.Mode != scimv1.ModeObserve {
		t.Status.Plan = nil
		return nil
	}
	list, err := targets.Identities(ctx, r.Client, t.Kind, t.Namespace, t.Name)
	if err != nil {
		return err
	}
	counts := map[scimv1.PlanAction]int32{}
	removals := map[string]int32{} // planned deactivations and deletions, by namespace
	for i := range list.Items {
		si := &list.Items[i]
		e := targets.IndexEntries(si.Namespace, si.Status.Targets)[t.Key()]
		if e == nil || e.Plan == nil {
			continue
		}
		counts[e.Plan.Action]++
		if e.Plan.Action == scimv1.PlanDeactivate || e.Plan.Action == scimv1.PlanDelete {
			removals[si.Namespace]++
		}
	}
	p := &scimv1.TargetPlan{OrphanAction: string(orphanPolicy(t))}
	for _, a := range slices.Sorted(maps.Keys(counts)) {
		p.Actions = append(p.Actions, scimv1.PlanCount{Action: a, Count: counts[a]})
	}
	if o := t.Status.Orphans; o != nil {
		p.Orphans = o.Count
		if act := orphanPolicy(t); act == scimv1.OrphanPolicyDeactivate || act == scimv1.OrphanPolicyDelete {
			removals[""] += o.Count
		}
	}
	p.Breaker = breakerVerdict(t, removals)
	if was := t.Status.Plan; was != nil {
		prev := was.DeepCopy()
		prev.PlannedAt = nil
		if equality.Semantic.DeepEqual(prev, p) {
			return nil // unchanged: no status write for it
		}
	}
	now := metav1.NewTime(status.Clock(r.Clock).Now())
	p.PlannedAt = &now
	t.Status.Plan = p
	return nil
}

// breakerVerdict says whether the planned deactivations and deletions (by namespace; "" the
// orphans) would pass the circuit breaker in one interval once the target is enforced.
func breakerVerdict(t *targets.Target, removals map[string]int32) string {
	var total int32
	for _, n := range removals {
		total += n
	}
	cb := t.Spec.CircuitBreaker
	if cb == nil {
		return fmt.Sprintf("no circuit breaker: %d deactivation(s) and deletion(s) would be made at once", total)
	}
	var over []string
	for _, ns := range slices.Sorted(maps.Keys(removals)) {
		if n := removals[ns]; n > cb.MaxDeletionsPerInterval {
			name := ns
			if name == "" {
				name = "(orphans)"
			}
			over = append(over, fmt.Sprintf("%s: %d", name, n))
		}
	}
	if len(over) == 0 {
		return fmt.Sprintf("within the limit: %d deactivation(s) and deletion(s), at most %d per namespace per interval", total, cb.MaxDeletionsPerInterval)
	}
	return status.Truncate(fmt.Sprintf("would pause: more than %d deactivations and deletions in one interval in %s; the rest would wait for the next interval",
		cb.MaxDeletionsPerInterval, strings.Join(over, ", ")), 512)
}
