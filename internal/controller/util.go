package controller

import "k8s.io/utils/clock"

// clockOr is c, or the real clock when c is nil (a zero-valued reconciler in a unit test).
func clockOr(c clock.PassiveClock) clock.PassiveClock {
	if c == nil {
		return clock.RealClock{}
	}
	return c
}
