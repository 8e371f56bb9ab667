package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// maxReasonBytes bounds the revocation reason kept on the identity.
const maxReasonBytes = 256

// revokeReason is --reason made safe to store and show: one line of printable text, at most
// maxReasonBytes bytes.
func revokeReason(s string) string {
	return strings.Join(strings.Fields(clean(s, maxReasonBytes)), " ")
}

// unconfirmed lists the targets on which the account is not provably off, each with what it
// last said and why it counts as still active.
func unconfirmed(id *identity) []string {
	var out []string
	for _, t := range stillActive(id.targets()) {
		s := fmt.Sprintf("%s/%s (%s", t.Kind, t.Name, t.State)
		if t.Active != nil {
			s += fmt.Sprintf(", active=%t", *t.Active)
		}
		if t.Message != "" {
			s += ": " + clean(t.Message, 256)
		}
		out = append(out, s+"): "+t.Evidence)
	}
	return out
}

// targetLines prints, for each target, what it last said and whether the account is off on
// the target's evidence or still active.
func targetLines(w io.Writer, id *identity) error {
	for _, t := range id.targets() {
		mark := "STILL ACTIVE: " + t.Evidence
		if t.AccountOff {
			mark = "confirmed off: " + t.Evidence
		}
		line := fmt.Sprintf("  %s/%s: %s", t.Kind, t.Name, t.State)
		if t.Active != nil {
			line += fmt.Sprintf(" (active=%t)", *t.Active)
		}
		if _, err := fmt.Fprintln(w, clean(line+": "+mark, 1024)); err != nil {
			return err
		}
	}
	return nil
}

// errSuspendReverted: spec.suspend went back to false while revoke waited.
var errSuspendReverted = errors.New("spec.suspend was set back to false")

// revokeLong and revokeExample are revoke's help.
const (
	revokeLong = `revoke sets spec.suspend=true on the identity: the operator sets active=false on its account on every
target. The accounts are kept (not deleted), so access can be restored by setting spec.suspend=false.
--reason is recorded in the annotation ` + revokedReasonKey + `. revoke then waits (--timeout) until
every target shows the account off (read back gone or active=false), and fails naming the targets on
which it is still active: left by deletionPolicy Orphan, last read active=true, or not read back.`
	revokeExample = `  kubectl scim revoke billing-bot -n team-a --reason "INC-4242: token leaked in CI logs"
  kubectl scim revoke billing-bot -n team-a --timeout 2m`
)

func newRevokeCommand(o *Options) *cobra.Command {
	var (
		reason  string
		timeout time.Duration
		noWait  bool
	)
	cmd := &cobra.Command{
		Use:     "revoke NAME",
		Short:   "Suspend a ServiceIdentity on every target now (incident kill switch) and wait for the targets to confirm",
		Long:    revokeLong,
		Example: revokeExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 && !noWait {
				return fmt.Errorf("--timeout must be positive (or use --no-wait)")
			}
			dyn, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id, err := getIdentity(ctx, dyn, ns, args[0])
			if err != nil {
				return err
			}
			annotations := map[string]*string{}
			if r := revokeReason(reason); r != "" {
				annotations[revokedReasonKey] = &r
			}
			patch, err := mergePatch(annotations, map[string]any{"suspend": true})
			if err != nil {
				return err
			}
			if _, err := dyn.Resource(identities).Namespace(ns).Patch(ctx, id.Name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
				return fmt.Errorf("suspending %s/%s: %w", ns, id.Name, err)
			}
			if err := explainRevoke(o.Out, id, annotations[revokedReasonKey] != nil); err != nil {
				return err
			}
			if noWait {
				return nil
			}
			if _, err := fmt.Fprintf(o.Out, "Waiting up to %s for every target to confirm...\n", timeout); err != nil {
				return err
			}
			last, gone, err := waitSuspended(ctx, dyn, ns, id.Name, timeout)
			if err := revokeOutcome(o.Out, ns, id, last, gone, err, timeout); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Every target confirmed: the account %q is inactive.\n", userNameOf(last))
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "Why the identity is revoked (recorded in "+revokedReasonKey+", at most 256 bytes)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for every target to confirm")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "Return once spec.suspend is set, without waiting for the targets")
	return cmd
}

// revokeOutcome reports what waiting for the targets showed: every target's line, and an
// error unless every target confirmed the account off.
func revokeOutcome(out io.Writer, ns string, id, last *identity, gone bool, err error, timeout time.Duration) error {
	if last != nil {
		if werr := targetLines(out, last); werr != nil {
			return werr
		}
	}
	if gone {
		// Its status went with it: nothing shows any more what the targets did, and a
		// deletion under deletionPolicy Orphan (or a finalizer removed by hand) left
		// the accounts as they were.
		still := "its targets were not read"
		if last != nil {
			still = "when last read, the account was still active on " + strings.Join(unconfirmed(last), "; ")
		}
		return fmt.Errorf("serviceidentity %s/%s was deleted while revoke waited, before every target confirmed the account off; "+
			"its status went with it, so nothing shows the account %q inactive (%s): check the account on each target",
			ns, id.Name, clean(userNameOf(id), 256), still)
	}
	switch {
	case errors.Is(err, errSuspendReverted):
		hint := ""
		if c := metav1.GetControllerOf(last); c != nil {
			hint = fmt.Sprintf("; the identity is controlled by %s %s, whose scim.nhi.dev/* annotations the operator writes into its spec", c.Kind, c.Name)
		}
		return fmt.Errorf("%s/%s: %w (%s) before every target confirmed; access may be restored%s",
			ns, id.Name, err, suspendWriter(last), hint)
	case err != nil && last != nil:
		pending := unconfirmed(last)
		return fmt.Errorf("spec.suspend is set, but the account is still active on %d of %d targets after %s: %s",
			len(pending), len(last.targets()), timeout, strings.Join(pending, "; "))
	case err != nil:
		return err
	}
	return nil
}

// explainRevoke says what the suspension does.
func explainRevoke(w io.Writer, id *identity, reasonSet bool) error {
	p := &printer{w: w}
	p.line("serviceidentity %s/%s suspended (spec.suspend=true)", id.Namespace, id.Name)
	if reasonSet {
		p.line("Reason recorded in annotation %s.", revokedReasonKey)
	}
	var names []string
	for _, t := range id.targets() {
		if t.InSpec {
			names = append(names, t.Kind+"/"+t.Name)
		}
	}
	p.line("The operator sets active=false on the account %q on %d target(s): %s.", clean(userNameOf(id), 256),
		len(names), strings.Join(names, ", "))
	p.line("The accounts are kept, not deleted; to restore access: kubectl patch serviceidentity %s -n %s --type=merge -p '{\"spec\":{\"suspend\":false}}'",
		id.Name, id.Namespace)
	if id.DeletionTimestamp != nil {
		p.line("The identity is being deleted: its accounts are being deprovisioned as well.")
	}
	return p.err
}

func userNameOf(id *identity) string {
	if id.Status.UserName != "" {
		return id.Status.UserName
	}
	return id.EffectiveUserName()
}

// waitSuspended polls the identity until every target shows its account off (AccountOff), the
// identity is gone (deleted, with its status), spec.suspend is turned off again, or the
// timeout. It returns the last identity read.
func waitSuspended(ctx context.Context, dyn dynamic.Interface, ns, name string, timeout time.Duration) (last *identity, gone bool, err error) {
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(identities).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			gone = true
			return true, nil
		}
		if err != nil {
			return false, nil //nolint:nilerr // transient read errors are retried until the timeout
		}
		id, err := decodeIdentity(u)
		if err != nil {
			return false, err
		}
		last = id
		if !id.Spec.Suspend {
			return false, errSuspendReverted
		}
		return len(unconfirmed(id)) == 0, nil
	})
	return last, gone, err
}

// suspendWriter says who turned spec.suspend off, from managedFields: the field managers that
// own spec.suspend (set to false). An update that rewrote the whole spec without the field
// leaves no owner of it.
func suspendWriter(id *identity) string {
	var owners []string
	if id != nil {
		for _, mf := range id.ManagedFields {
			if mf.FieldsV1 != nil && mf.Manager != FieldManager && strings.Contains(mf.FieldsV1.GetRawString(), `"f:suspend"`) {
				owners = append(owners, mf.Manager)
			}
		}
	}
	if len(owners) == 0 {
		return "dropped by an update of the whole spec"
	}
	return "by " + strings.Join(owners, ", ")
}
