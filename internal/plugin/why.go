package plugin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

func newWhyCommand(o *Options) *cobra.Command {
	var maxEvents int
	cmd := &cobra.Command{
		Use:   "why NAME",
		Short: "Explain why a ServiceIdentity is in its state: conditions, Events, what each target said",
		Example: `  kubectl scim why billing-bot -n team-a
  kubectl scim why billing-bot -n team-a --events 50`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dyn, kube, ns, err := o.clients()
			if err != nil {
				return err
			}
			id, err := getIdentity(cmd.Context(), dyn, ns, args[0])
			if err != nil {
				return err
			}
			// The identity's own state is worth showing without its Events (a user may read
			// identities but not Events).
			events, eventsErr := eventsOf(cmd.Context(), kube, id)
			if eventsErr != nil {
				_, _ = fmt.Fprintf(o.ErrOut, "Warning: Events not shown: %v\n", eventsErr)
			}
			if maxEvents >= 0 && len(events) > maxEvents {
				events = events[len(events)-maxEvents:]
			}
			return writeWhy(o.Out, id, events, eventsErr, o.now())
		},
	}
	cmd.Flags().IntVar(&maxEvents, "events", 20, "Show at most this many of the most recent Events (-1: all)")
	return cmd
}

// eventsOf returns the Events about the identity, oldest first: those regarding it, and those
// regarding its workload that name it as related (the identity created from the workload's
// annotations, or deleted with it). Events written through core/v1 are served by
// events.k8s.io/v1 too.
func eventsOf(ctx context.Context, kube eventsclient.EventsV1Interface, id *identity) ([]eventsv1.Event, error) {
	selectors := []fields.Set{{"regarding.uid": string(id.UID)}}
	if w := id.Status.Workload; w != nil {
		selectors = append(selectors, fields.Set{"regarding.uid": string(w.UID)})
	} else if w := id.Spec.WorkloadRef; w != nil {
		selectors = append(selectors, fields.Set{"regarding.kind": w.Kind, "regarding.name": w.Name})
	}
	var out []eventsv1.Event
	seen := map[string]bool{}
	for i, sel := range selectors {
		list, err := kube.Events(id.Namespace).List(ctx, metav1.ListOptions{FieldSelector: fields.SelectorFromSet(sel).String()})
		if err != nil {
			return nil, fmt.Errorf("listing events: %w", err)
		}
		for _, e := range list.Items {
			if seen[string(e.UID)] {
				continue
			}
			if i > 0 && (e.Related == nil || e.Related.UID != id.UID) {
				continue // about the workload, not this identity
			}
			seen[string(e.UID)] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return lastSeen(&out[i]).Before(lastSeen(&out[j])) })
	return out, nil
}

// lastSeen is when the Event last happened: its series' last observation, its eventTime, or
// (Events written through core/v1) its lastTimestamp, else when it was created.
func lastSeen(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func eventCount(e *eventsv1.Event) int32 {
	switch {
	case e.Series != nil && e.Series.Count > 0:
		return e.Series.Count
	case e.DeprecatedCount > 0:
		return e.DeprecatedCount
	}
	return 1
}

// writeWhy prints the explanation. Every text that came from the cluster is cleaned: messages
// carry what providers and Event writers said.
func writeWhy(w io.Writer, id *identity, events []eventsv1.Event, eventsErr error, now time.Time) error {
	p := &printer{w: w}
	state, reason := id.state()
	p.line("ServiceIdentity %s/%s", id.Namespace, id.Name)
	p.field("State", strings.TrimSpace(state+" "+paren(reason)))
	userName := id.Status.UserName
	if userName == "" {
		userName = id.EffectiveUserName()
	}
	p.field("UserName", userName)
	owner := orDash(id.Spec.Owner)
	if s := id.ownerState(); s != "" {
		owner += " (owner " + s
		if m := id.Status.Owner.Message; m != "" {
			owner += ": " + m
		}
		owner += ")"
	}
	p.field("Owner", owner)
	p.field("Workload", whyWorkload(id))
	p.field("Expires", whyExpires(id, now))
	writeWhyReview(p, id, now)
	if id.Spec.Suspend {
		msg := "spec.suspend=true: the operator sets every account active=false"
		if r := id.Annotations[revokedReasonKey]; r != "" {
			msg += "; revoked: " + r
		}
		p.field("Suspended", msg)
	}
	if rows := id.targets(); len(rows) > 0 {
		p.field("Accounts", accountsSummary(rows))
	}
	if id.DeletionTimestamp != nil {
		p.field("Deleting", fmt.Sprintf("since %s (%s); finalizers: %s", rfc3339(id.DeletionTimestamp),
			relative(id.DeletionTimestamp.Time, now), orDash(strings.Join(id.Finalizers, ", "))))
	}
	if id.Status.DeprovisionedAt != nil {
		at := rfc3339(id.Status.DeprovisionedAt)
		if still := stillActive(id.targets()); len(still) > 0 {
			// The operator's word; the account is off only where a target showed it (Accounts).
			at += fmt.Sprintf(" (yet the account is still active on %d target(s): see Accounts)", len(still))
		}
		p.field("Deprovisioned", at)
	}
	if id.Status.ObservedGeneration != id.Generation {
		p.field("Observed", fmt.Sprintf("generation %d of %d: the operator has not finished with the latest spec",
			id.Status.ObservedGeneration, id.Generation))
	}

	writeWhyConditions(p, id, now)
	writeWhyTargets(p, id, now)
	writeWhyEvents(p, events, eventsErr, now)
	return p.err
}

// whyWorkload says which workload the identity belongs to.
func whyWorkload(id *identity) string {
	switch {
	case id.Status.Workload != nil:
		wl := id.Status.Workload
		return fmt.Sprintf("%s %s (%s, uid %s)", wl.Kind, wl.Name, wl.APIVersion, wl.UID)
	case id.Spec.WorkloadRef != nil:
		wl := id.Spec.WorkloadRef
		return fmt.Sprintf("%s %s (%s, not recorded on status yet)", wl.Kind, wl.Name, wl.APIVersion)
	}
	return "- (none: the identity lives until deleted or expired)"
}

// whyExpires says when the identity expires, and what capped its lifetime.
func whyExpires(id *identity, now time.Time) string {
	t := id.expiresAt()
	if t == nil {
		return "- (no expiry)"
	}
	exp := t.Format(time.RFC3339) + " (" + relative(*t, now) + ")"
	if c := id.Status.ExpiryCappedBy; c != "" {
		exp += ", capped by " + c
	}
	return exp
}

// writeWhyReview prints the review line: the interval, the last attestation and the next one.
func writeWhyReview(p *printer, id *identity, now time.Time) {
	if id.reviewEvery() != "" || id.nextReviewAt() != nil || id.lastReviewedAt() != nil || id.Annotations[reviewedAtKey] != "" {
		var parts []string
		if e := id.reviewEvery(); e != "" {
			parts = append(parts, "every "+e)
		}
		if t := id.lastReviewedAt(); t != nil {
			last := "last " + rfc3339(t)
			if by := id.Status.Review.ReviewedBy; by != "" {
				last += " by " + clean(by, 256)
			}
			parts = append(parts, last)
		} else if a := id.Annotations[reviewedAtKey]; a != "" {
			parts = append(parts, "attested "+a+" (not recorded on status yet)")
		}
		if t := id.nextReviewAt(); t != nil {
			due := "next " + rfc3339(t)
			if !t.After(now) {
				due += " (overdue by " + age(t.Time, now) + ")"
			} else {
				due += " (" + relative(t.Time, now) + ")"
			}
			parts = append(parts, due)
		}
		if r := id.Status.Review; r != nil && r.Message != "" {
			parts = append(parts, r.Message)
		}
		p.field("Review", strings.Join(parts, ", "))
	}
}

// writeWhyConditions prints the identity's conditions.
func writeWhyConditions(p *printer, id *identity, now time.Time) {
	p.line("")
	p.line("Conditions:")
	if len(id.Status.Conditions) == 0 {
		p.line("  <none>: the operator has not reported on this identity")
	} else {
		rows := [][]string{{"TYPE", "STATUS", "REASON", "AGE", "MESSAGE"}}
		for _, c := range id.Status.Conditions {
			rows = append(rows, []string{c.Type, string(c.Status), c.Reason, age(c.LastTransitionTime.Time, now), c.Message})
		}
		p.table(rows)
	}

}

// writeWhyTargets prints a row per target, with what it confirmed.
func writeWhyTargets(p *printer, id *identity, now time.Time) {
	p.line("")
	p.line("Targets:")
	targets := id.targets()
	if len(targets) == 0 {
		p.line("  <none>")
	} else {
		rows := [][]string{{"TARGET", "STATE", "ACTIVE", "ACCOUNT", "ID", "USERNAME", "LAST SYNC", "MESSAGE"}}
		for _, t := range targets {
			active := "-"
			if t.Active != nil {
				active = fmt.Sprint(*t.Active)
			}
			sync := "-"
			if t.LastSyncTime != nil {
				sync = rfc3339(t.LastSyncTime) + " (" + relative(t.LastSyncTime.Time, now) + ")"
			}
			name := t.Kind + "/" + t.Name
			if !t.InSpec {
				name += " (removed from spec)"
			}
			msg := t.Message
			if r := t.Revocation; r != nil {
				verb := "revocation confirmed"
				if r.Result == scimv1.RevocationOrphaned {
					verb = "revocation skipped" // deletionPolicy Orphan: nothing was read back
				}
				msg = strings.TrimSpace(fmt.Sprintf("%s %s (%s) %s", verb, rfc3339(&r.ConfirmedAt), r.Result, msg))
			}
			rows = append(rows, []string{name, t.State, active, t.account(), orDash(t.ID), orDash(t.UserName), sync, orDash(msg)})
		}
		p.table(rows)
	}

}

// writeWhyEvents prints the identity's Events, oldest first.
func writeWhyEvents(p *printer, events []eventsv1.Event, eventsErr error, now time.Time) {
	p.line("")
	p.line("Events (oldest first):")
	switch {
	case eventsErr != nil:
		p.line("  <not shown: %s>", clean(eventsErr.Error(), 512))
	case len(events) == 0:
		p.line("  <none> (Events expire after an hour by default)")
	default:
		rows := [][]string{{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}}
		for i := range events {
			e := &events[i]
			seen := age(lastSeen(e), now)
			if n := eventCount(e); n > 1 {
				seen += fmt.Sprintf(" (x%d)", n)
			}
			object := e.Regarding.Kind + "/" + e.Regarding.Name
			rows = append(rows, []string{seen, e.Type, e.Reason, object, e.Note})
		}
		p.table(rows)
	}
}

// accountsSummary says on which targets the account is provably off, and why it counts as
// still active on each of the others.
func accountsSummary(rows []targetRow) string {
	still := stillActive(rows)
	if len(still) == 0 {
		return fmt.Sprintf("off on every target (%d), on each target's own evidence", len(rows))
	}
	parts := make([]string, 0, len(still))
	for _, t := range still {
		parts = append(parts, fmt.Sprintf("%s/%s: %s", t.Kind, t.Name, t.Evidence))
	}
	return fmt.Sprintf("still active on %d of %d target(s): %s", len(still), len(rows), strings.Join(parts, "; "))
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

// printer writes lines and aligned tables, keeping the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) field(name, value string) {
	p.line("  %-14s %s", name+":", clean(value, 2048))
}

func (p *printer) table(rows [][]string) {
	if p.err != nil {
		return
	}
	tw := tabwriter.NewWriter(p.w, 0, 8, 2, ' ', 0)
	for _, r := range rows {
		cols := make([]string, len(r))
		for i, c := range r {
			cols[i] = clean(c, 1024)
		}
		if _, p.err = fmt.Fprintln(tw, "  "+strings.Join(cols, "\t")); p.err != nil {
			return
		}
	}
	p.err = tw.Flush()
}
