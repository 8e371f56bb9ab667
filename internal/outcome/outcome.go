// Package outcome says what one step against a target came to (done, transient with a wait, or
// stalled until a human acts, and under which condition reason), and folds the outcomes of a pass.
package outcome

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"

	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Outcome is what one target's step produced.
type Outcome struct {
	Err        error         // transient: retry with backoff
	Stalled    string        // permanent: needs a human
	Reason     string        // condition reason when not ok
	RetryAfter time.Duration // the target asked to wait
	// Observed is the plan made instead of acting, on a target in Observe mode ("" when the
	// operator acted).
	Observed string
}

func (o Outcome) OK() bool { return o.Err == nil && o.Stalled == "" }

// Classify maps an error to a transient or permanent outcome with a reason.
func Classify(err error) Outcome {
	var nf *targets.NotFoundError
	var se *scim.Error
	var open *breaker.OpenError
	switch {
	case errors.As(err, &nf):
		return Outcome{Err: err, Reason: scimv1.ReasonTargetNotFound}
	case errors.Is(err, connect.ErrAddressNotAllowed):
		return Outcome{Stalled: err.Error(), Reason: scimv1.ReasonAddressNotAllowed}
	case connect.IsCredentialsError(err):
		return Outcome{Err: err, Reason: scimv1.ReasonCredentials}
	case scim.IsUnauthorized(err):
		return Outcome{Err: err, Reason: scimv1.ReasonUnauthorized}
	case errors.Is(err, ErrConflict):
		return Outcome{Stalled: err.Error(), Reason: scimv1.ReasonAccountConflict}
	case errors.As(err, &open):
		return Outcome{Err: err, Reason: scimv1.ReasonBreakerOpen, RetryAfter: open.Wait}
	case errors.Is(err, scim.ErrTargetBusy):
		// No Retry-After: the controller's exponential backoff spaces the attempts on a target
		// that stays stuck, instead of one every second.
		return Outcome{Err: err, Reason: scimv1.ReasonUnreachable}
	case scim.IsRetryable(err):
		d, _ := scim.RetryAfter(err)
		return Outcome{Err: err, Reason: scimv1.ReasonUnreachable, RetryAfter: d}
	case errors.As(err, &se):
		// 400 invalid value, 409 that lookup could not resolve, 404 on the endpoint...: a
		// human has to change the spec or the target.
		return Outcome{Stalled: err.Error(), Reason: scimv1.ReasonRejected}
	}
	return Outcome{Err: err, Reason: scimv1.ReasonProgressing}
}

// Folded is what the outcomes of an identity's targets come to, for its conditions and for the
// work queue.
type Folded struct {
	// Stalled and Transient are "target: message", in target order.
	Stalled, Transient []string
	// Reason is the first stalled outcome's reason, else the first transient one's (target order).
	Reason string
	// RetryAfter is the longest wait a target asked for.
	RetryAfter time.Duration
	// Errs are the transient errors no target gave a wait for: the work queue's backoff spaces
	// the next attempts.
	Errs []error
	// Observed are the plans of the targets in Observe mode, "target: plan", in target order.
	Observed []string
}

// Fold folds the outcomes, by target key, of one pass over an identity's targets.
func Fold(outcomes map[string]Outcome) Folded {
	var f Folded
	var transientReason string
	for _, key := range slices.Sorted(maps.Keys(outcomes)) {
		o := outcomes[key]
		switch {
		case o.Stalled != "":
			f.Stalled = append(f.Stalled, key+": "+o.Stalled)
			if f.Reason == "" {
				f.Reason = o.Reason
			}
		case o.Observed != "":
			f.Observed = append(f.Observed, key+": "+o.Observed)
		case o.Err != nil:
			f.Transient = append(f.Transient, key+": "+o.Err.Error())
			if transientReason == "" {
				transientReason = o.Reason
			}
			if o.RetryAfter > 0 {
				f.RetryAfter = max(f.RetryAfter, o.RetryAfter)
			} else {
				f.Errs = append(f.Errs, fmt.Errorf("%s: %w", key, o.Err))
			}
		}
	}
	if f.Reason == "" {
		f.Reason = transientReason
	}
	return f
}

// ErrConflict: an account the identity needs (its userName, or its externalId twice)
// is not provably and uniquely ours. Nothing is written to or deleted from it.
var ErrConflict = errors.New("account conflict")
