package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

var (
	scimTargets        = schema.GroupVersionResource{Group: scimv1.GroupVersion.Group, Version: scimv1.GroupVersion.Version, Resource: "scimtargets"}
	clusterScimTargets = schema.GroupVersionResource{Group: scimv1.GroupVersion.Group, Version: scimv1.GroupVersion.Version, Resource: "clusterscimtargets"}
)

// targetKey names a target as plan and import show it: ScimTarget/NAMESPACE/NAME or
// ClusterScimTarget/NAME.
type targetKey struct {
	Kind, Namespace, Name string
}

func (k targetKey) String() string { return targets.Key(k.Kind, k.Namespace, k.Name) }

// ref is the target as an identity of the target's namespace names it: ScimTarget/NAME or
// ClusterScimTarget/NAME.
func (k targetKey) ref() string { return k.Kind + "/" + k.Name }

// parseTarget reads a TARGET argument: NAME (a ScimTarget of ns), ScimTarget/NAME or
// ClusterScimTarget/NAME (kinds compared case-insensitively, short names st and cst too).
func parseTarget(arg, ns string) (targetKey, error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		return targetKey{Kind: scimv1.KindScimTarget, Namespace: ns, Name: arg}, validTargetName(arg, arg)
	}
	switch strings.ToLower(kind) {
	case "scimtarget", "scimtargets", "st", "scimt":
		return targetKey{Kind: scimv1.KindScimTarget, Namespace: ns, Name: name}, validTargetName(arg, name)
	case "clusterscimtarget", "clusterscimtargets", "cst", "cscimt":
		return targetKey{Kind: scimv1.KindClusterScimTarget, Name: name}, validTargetName(arg, name)
	}
	return targetKey{}, fmt.Errorf("target %q: use NAME (a ScimTarget of the namespace) or ClusterScimTarget/NAME", arg)
}

func validTargetName(arg, name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("target %q: use NAME (a ScimTarget of the namespace) or ClusterScimTarget/NAME", arg)
	}
	return nil
}

// readTarget reads a target with the dynamic client, as a GenericTarget.
func readTarget(ctx context.Context, dyn dynamic.Interface, k targetKey) (scimv1.GenericTarget, error) {
	var (
		u   *unstructured.Unstructured
		err error
	)
	if k.Kind == scimv1.KindClusterScimTarget {
		u, err = dyn.Resource(clusterScimTargets).Get(ctx, k.Name, metav1.GetOptions{})
	} else {
		u, err = dyn.Resource(scimTargets).Namespace(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	obj, err := scimv1.NewGenericTarget(k.Kind)
	if err != nil {
		return nil, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", k, err)
	}
	return obj, nil
}

// listIdentities lists the identities of ns (metav1.NamespaceAll: every namespace) page by page.
func listIdentities(ctx context.Context, dyn dynamic.Interface, ns string) ([]*identity, error) {
	var out []*identity
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := dyn.Resource(identities).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing serviceidentities: %w", err)
		}
		for i := range list.Items {
			id, err := decodeIdentity(&list.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, id)
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// targetKeys lists the targets an identity references or still has an entry for, in the
// order of spec.targetRefs, then status.
func (id *identity) targetKeys() []targetKey {
	var out []targetKey
	seen := map[targetKey]bool{}
	add := func(kind, name string) {
		k := targetKey{Kind: kind, Name: name}
		if kind != scimv1.KindClusterScimTarget {
			k.Kind, k.Namespace = scimv1.KindScimTarget, id.Namespace
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, r := range id.Spec.TargetRefs {
		add(r.TargetKind(), r.Name)
	}
	for _, t := range id.Status.Targets {
		add(t.Kind, t.Name)
	}
	return out
}

// entry is the identity's status entry for target k, nil when there is none.
func (id *identity) entry(k targetKey) *scimv1.IdentityTargetStatus {
	for i := range id.Status.Targets {
		t := &id.Status.Targets[i]
		kind := t.Kind
		if kind == "" {
			kind = scimv1.KindScimTarget
		}
		if kind == k.Kind && t.Name == k.Name && (k.Kind == scimv1.KindClusterScimTarget || id.Namespace == k.Namespace) {
			return t
		}
	}
	return nil
}

// PlanAccount is one identity's account on one target in plan's JSON and YAML output.
type PlanAccount struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Target is Kind/name as the identity names it (a ScimTarget is in the identity's namespace).
	Target string `json:"target"`
	// UserName is the account's userName (status, else the identity's effective userName).
	UserName string `json:"userName,omitempty"`
	// Plan is status.targets[].plan as the operator recorded it; absent when it recorded none.
	Plan *scimv1.AccountPlan `json:"plan,omitempty"`
	// Stale says why the plan may not reflect the identity's latest spec or the target's
	// accounts (empty when it is current).
	Stale string `json:"stale,omitempty"`

	key targetKey
}

// PlanTarget is one target's summary in plan's JSON and YAML output.
type PlanTarget struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Mode is spec.mode (Observe or Enforce); empty when the target could not be read.
	Mode scimv1.TargetMode `json:"mode,omitempty"`
	// Plan is status.plan; absent in Enforce mode, and until the operator planned.
	Plan *scimv1.TargetPlan `json:"plan,omitempty"`
	// Stale says why the summary may be out of date.
	Stale string `json:"stale,omitempty"`
	// Error says why the target could not be read (e.g. forbidden, not found).
	Error string `json:"error,omitempty"`

	key       targetKey
	readable  bool
	found     bool
	sweepStep time.Duration
}

// PlanReport is plan's JSON and YAML document.
type PlanReport struct {
	Accounts []PlanAccount `json:"accounts"`
	Targets  []PlanTarget  `json:"targets"`
}

// staleAfter is how long a plan is trusted: the operator refreshes it at every sweep, so one
// older than two sweep intervals (and a minute) was not refreshed by the last one.
func staleAfter(t scimv1.GenericTarget) time.Duration {
	return 2*targets.SweepInterval(targets.Of(t, "")) + time.Minute
}

// buildPlan gathers the plans of the identities of ns (every namespace when all) on the
// targets in Observe mode, and the targets' summaries; only targets those identities use
// are read, or only want when it is set.
func buildPlan(ctx context.Context, dyn dynamic.Interface, ns string, all bool, want *targetKey, now time.Time) (*PlanReport, error) {
	listNS := ns
	if all {
		listNS = metav1.NamespaceAll
	}
	if want != nil && want.Kind == scimv1.KindScimTarget && !all {
		listNS = want.Namespace
	}
	ids, err := listIdentities(ctx, dyn, listNS)
	if err != nil {
		return nil, err
	}
	report := &PlanReport{Accounts: []PlanAccount{}, Targets: []PlanTarget{}}
	byKey := map[targetKey]*PlanTarget{}
	var order []targetKey
	addTarget := func(k targetKey) {
		if byKey[k] == nil {
			byKey[k] = &PlanTarget{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, key: k}
			order = append(order, k)
		}
	}
	if want != nil {
		addTarget(*want)
	}
	for _, id := range ids {
		for _, k := range id.targetKeys() {
			if want != nil && k != *want {
				continue
			}
			addTarget(k)
			acc := PlanAccount{Namespace: id.Namespace, Name: id.Name, Target: k.ref(), UserName: userNameOf(id), key: k}
			if e := id.entry(k); e != nil {
				if e.UserName != "" {
					acc.UserName = e.UserName
				}
				acc.Plan = withoutRepeats(e.Plan)
			}
			if id.Status.ObservedGeneration != id.Generation {
				acc.Stale = fmt.Sprintf("the operator has not planned the latest spec yet (generation %d of %d)", id.Status.ObservedGeneration, id.Generation)
			}
			report.Accounts = append(report.Accounts, acc)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].String() < order[j].String() })
	for _, k := range order {
		pt := byKey[k]
		obj, err := readTarget(ctx, dyn, k)
		switch {
		case apierrors.IsNotFound(err):
			pt.Error = "not found"
		case apierrors.IsForbidden(err):
			pt.Error = "not readable with your credentials (forbidden): its mode and plan summary are not shown"
		case err != nil:
			pt.Error = clean(err.Error(), 512)
		default:
			pt.readable, pt.found = true, true
			pt.Mode = obj.TargetSpec().Mode
			if pt.Mode == "" {
				pt.Mode = scimv1.ModeEnforce
			}
			st := obj.TargetStatus()
			pt.sweepStep = staleAfter(obj)
			switch {
			case pt.Mode != scimv1.ModeObserve:
				// No plan: whatever an earlier Observe period left on status is not shown.
			case st.ObservedGeneration != obj.GetGeneration():
				pt.Plan = st.Plan
				pt.Stale = fmt.Sprintf("the operator has not observed the target's latest spec yet (generation %d of %d)", st.ObservedGeneration, obj.GetGeneration())
			case st.Plan == nil:
				pt.Stale = "no plan recorded yet: the operator plans at the target's next sweep"
			default:
				pt.Plan = st.Plan
				if at := st.Plan.PlannedAt; at == nil || at.IsZero() {
					pt.Stale = "the plan has no plannedAt"
				} else if now.Sub(at.Time) > pt.sweepStep {
					pt.Stale = fmt.Sprintf("planned %s, more than two sweep intervals ago: the operator has not refreshed it (is it running, and is the target Ready?)", age(at.Time, now)+" ago")
				}
			}
		}
		report.Targets = append(report.Targets, *pt)
	}
	// Accounts: only those on targets in Observe mode, or whose target's mode is unknown.
	kept := report.Accounts[:0]
	for _, a := range report.Accounts {
		pt := byKey[a.key]
		if pt.readable && pt.Mode != scimv1.ModeObserve {
			continue
		}
		if a.Plan == nil && a.Stale == "" {
			a.Stale = "no plan recorded for this account yet"
		} else if a.Plan != nil && a.Stale == "" && pt.readable {
			if at := a.Plan.PlannedAt; at != nil && !at.IsZero() && now.Sub(at.Time) > pt.sweepStep {
				a.Stale = "planned " + age(at.Time, now) + " ago, more than two sweep intervals: not refreshed since"
			}
		}
		kept = append(kept, a)
	}
	report.Accounts = kept
	return report, nil
}

// changesCell is the short summary of a plan's changes: the attribute paths, then the groups
// joined and left.
func changesCell(p *scimv1.AccountPlan) string {
	if p == nil {
		return ""
	}
	var parts []string
	if len(p.Changes) > 0 {
		paths := make([]string, 0, len(p.Changes))
		for _, c := range p.Changes {
			paths = append(paths, c.Path)
		}
		parts = append(parts, strings.Join(paths, ", "))
	}
	if len(p.GroupsAdded) > 0 {
		parts = append(parts, "+groups: "+strings.Join(p.GroupsAdded, ","))
	}
	if len(p.GroupsRemoved) > 0 {
		parts = append(parts, "-groups: "+strings.Join(p.GroupsRemoved, ","))
	}
	return strings.Join(parts, "; ")
}

// actionCell is the plan's action, "<none>" without a plan.
func actionCell(a PlanAccount) string {
	if a.Plan == nil {
		return "<none>"
	}
	return string(a.Plan.Action)
}

// reasonCell is the plan's reason, with why it may be stale.
func reasonCell(a PlanAccount) string {
	var parts []string
	if a.Plan != nil && a.Plan.Reason != "" {
		parts = append(parts, a.Plan.Reason)
	}
	if a.Stale != "" {
		parts = append(parts, "(stale: "+a.Stale+")")
	}
	return strings.Join(parts, " ")
}

const planLong = `plan prints what the operator would do on the targets in Observe mode (spec.mode: Observe), where
it makes no SCIM write and records its plan instead: on each identity's status.targets[].plan (the
action for its account, the attributes that would change, the groups it would join or leave) and
on the target's status.plan (how many accounts per action, the orphans and what the orphan policy
would do to them, the circuit breaker's verdict).

Actions: None (the account matches), Create (no account yet), Adopt (an existing account would be
taken over: spec.adopt, or adoption IfNoExternalID), Update (attributes, active or groups differ),
Deactivate (active=false: suspension, expiry, policy), Delete (deactivated, then deleted), Conflict
(the operator would not touch the account; the reason says why).

TARGET is a ScimTarget of the namespace (NAME) or ClusterScimTarget/NAME; without it, every target
the identities of the namespace (or of every namespace, -A) use. A target in Enforce mode has no
plan: the operator acts, and the command says so.`

func newPlanCommand(o *Options) *cobra.Command {
	var (
		output        string
		allNamespaces bool
		diff          bool
	)
	cmd := &cobra.Command{
		Use:   "plan [TARGET]",
		Short: "Show what the operator would do on targets in Observe mode (per account, and per target)",
		Long:  planLong,
		Example: `  kubectl scim plan -n payments
  kubectl scim plan acme -n payments --diff
  kubectl scim plan ClusterScimTarget/corp -A -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: use table, json or yaml", output)
			}
			if diff && output != "table" {
				return fmt.Errorf("--diff prints a diff: use it without -o")
			}
			dyn, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			var want *targetKey
			if len(args) == 1 {
				k, err := parseTarget(args[0], ns)
				if err != nil {
					return err
				}
				want = &k
			}
			now := o.now()
			report, err := buildPlan(cmd.Context(), dyn, ns, allNamespaces, want, now)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(report)
			case "yaml":
				b, err := yaml.Marshal(report)
				if err != nil {
					return err
				}
				_, err = o.Out.Write(b)
				return err
			}
			if len(report.Targets) == 0 {
				where := "namespace " + ns
				if allNamespaces {
					where = "any namespace"
				}
				_, err := fmt.Fprintf(o.ErrOut, "No ServiceIdentities in %s use a target.\n", where)
				return err
			}
			if diff {
				if err := writePlanDiff(o.Out, report); err != nil {
					return err
				}
			} else if err := writePlanTable(o.Out, report); err != nil {
				return err
			}
			return writePlanSummary(o.Out, report, now)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "Output format: table, json or yaml")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "The identities of every namespace")
	cmd.Flags().BoolVar(&diff, "diff", false, "Per account, the attributes that would change (provider's value -, desired +) and the groups joined or left")
	return cmd
}

func writePlanTable(w io.Writer, r *PlanReport) error {
	if len(r.Accounts) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "NAMESPACE\tNAME\tTARGET\tACTION\tCHANGES\tREASON"); err != nil {
		return err
	}
	for _, a := range r.Accounts {
		cols := []string{a.Namespace, a.Name, a.Target, actionCell(a), orDash(changesCell(a.Plan)), orDash(reasonCell(a))}
		for i := range cols {
			cols[i] = strings.ReplaceAll(clean(cols[i], 512), "\t", " ")
		}
		if _, err := fmt.Fprintln(tw, strings.Join(cols, "\t")); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// writePlanDiff prints, per account, the attributes that would change as a unified diff: the
// provider's value on "-" lines, the desired one on "+" lines, then the groups.
func writePlanDiff(w io.Writer, r *PlanReport) error {
	p := &printer{w: w}
	for _, a := range r.Accounts {
		head := fmt.Sprintf("%s/%s on %s: %s", a.Namespace, a.Name, a.Target, actionCell(a))
		if a.UserName != "" {
			head += fmt.Sprintf(" (account %q)", clean(a.UserName, 256))
		}
		p.line("%s", clean(head, 1024))
		p.line("--- %s", clean("provider: "+a.Target+" (current)", 512))
		p.line("+++ %s", clean("ServiceIdentity "+a.Namespace+"/"+a.Name+" (desired)", 512))
		if a.Plan == nil {
			p.line("  (no plan recorded: %s)", clean(a.Stale, 512))
			p.line("")
			continue
		}
		if a.Plan.Reason != "" {
			p.line("  # %s", clean(a.Plan.Reason, 512))
		}
		for _, c := range a.Plan.Changes {
			if c.Current != "" {
				p.line("- %s: %s", clean(c.Path, 256), clean(c.Current, 600))
			}
			if c.Desired != "" {
				p.line("+ %s: %s", clean(c.Path, 256), clean(c.Desired, 600))
			}
		}
		for _, g := range a.Plan.GroupsRemoved {
			p.line("- group: %s", clean(g, 256))
		}
		for _, g := range a.Plan.GroupsAdded {
			p.line("+ group: %s", clean(g, 256))
		}
		if len(a.Plan.Changes) == 0 && len(a.Plan.GroupsAdded) == 0 && len(a.Plan.GroupsRemoved) == 0 {
			p.line("  (no attribute or group change)")
		}
		if a.Stale != "" {
			p.line("  (stale: %s)", clean(a.Stale, 512))
		}
		p.line("")
	}
	return p.err
}

// writePlanSummary prints each target's summary from status.plan, or why there is none.
func writePlanSummary(w io.Writer, r *PlanReport, now time.Time) error {
	p := &printer{w: w}
	for _, t := range r.Targets {
		name := t.key.String()
		switch {
		case t.Error != "":
			p.line("%s: %s", name, clean(t.Error, 512))
			continue
		case t.Mode != scimv1.ModeObserve:
			p.line("%s: mode %s: no plan, the operator acts (kubectl scim why NAME shows what it did)", name, t.Mode)
			continue
		case t.Plan == nil:
			p.line("%s: mode Observe: %s", name, clean(t.Stale, 512))
			continue
		}
		planned := "no plannedAt"
		if at := t.Plan.PlannedAt; at != nil && !at.IsZero() {
			planned = "planned " + rfc3339(at) + " (" + relative(at.Time, now) + ")"
		}
		p.line("%s: mode Observe, %s", name, planned)
		if t.Stale != "" {
			p.line("  STALE:    %s", clean(t.Stale, 512))
		}
		counts := make([]string, 0, len(t.Plan.Actions))
		for _, c := range sortedCounts(t.Plan.Actions) {
			counts = append(counts, fmt.Sprintf("%s %d", c.Action, c.Count))
		}
		p.line("  actions:  %s", orDash(clean(strings.Join(counts, ", "), 512)))
		orphans := fmt.Sprintf("%d account(s) of this cluster without an identity", t.Plan.Orphans)
		switch {
		case t.Plan.Orphans == 0:
			orphans = "none (every account of this cluster has its identity)"
		case t.Plan.OrphanAction != "":
			orphans += "; the orphan policy would " + orphanVerb(t.Plan.OrphanAction, t.Plan.Orphans)
		}
		p.line("  orphans:  %s", clean(orphans, 512))
		p.line("  breaker:  %s", orDash(clean(t.Plan.Breaker, 512)))
	}
	return p.err
}

// orphanVerb says what the orphan policy would do, in words.
func orphanVerb(action string, n int32) string {
	them := "them"
	if n == 1 {
		them = "it"
	}
	switch action {
	case string(scimv1.OrphanPolicyReport):
		return "report " + them + " (no write)"
	case string(scimv1.OrphanPolicyDeactivate):
		return "deactivate " + them + " (active=false)"
	case string(scimv1.OrphanPolicyDelete):
		return "delete " + them
	case string(scimv1.OrphanPolicyIgnore):
		return "ignore " + them
	}
	return action
}

// planActionOrder is the order actions are listed in.
var planActionOrder = map[scimv1.PlanAction]int{
	scimv1.PlanNone: 0, scimv1.PlanCreate: 1, scimv1.PlanAdopt: 2, scimv1.PlanUpdate: 3,
	scimv1.PlanDeactivate: 4, scimv1.PlanDelete: 5, scimv1.PlanConflict: 6,
}

func sortedCounts(in []scimv1.PlanCount) []scimv1.PlanCount {
	out := append([]scimv1.PlanCount(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		oi, ok := planActionOrder[out[i].Action]
		if !ok {
			oi = len(planActionOrder)
		}
		oj, ok := planActionOrder[out[j].Action]
		if !ok {
			oj = len(planActionOrder)
		}
		return oi < oj
	})
	return out
}

// withoutRepeats is the plan with each change listed once (the same path, current and desired
// value recorded twice says nothing more).
func withoutRepeats(p *scimv1.AccountPlan) *scimv1.AccountPlan {
	if p == nil || len(p.Changes) < 2 {
		return p
	}
	out := p.DeepCopy()
	out.Changes = out.Changes[:0]
	seen := map[scimv1.AttributeChange]bool{}
	for _, c := range p.Changes {
		if !seen[c] {
			seen[c] = true
			out.Changes = append(out.Changes, c)
		}
	}
	return out
}
