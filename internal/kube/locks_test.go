package kube

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// KeyLocks serialises holders of one key, lets other keys run, and keeps nothing afterwards.
func TestKeyLocks(t *testing.T) {
	var locks KeyLocks
	var wg sync.WaitGroup
	var inside [4]atomic.Int32
	var overlap atomic.Bool
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % len(inside)
			unlock := locks.Lock(types.NamespacedName{Namespace: "ns", Name: string(rune('a' + k))})
			if inside[k].Add(1) > 1 {
				overlap.Store(true)
			}
			runtime.Gosched() // let another holder try to come in
			inside[k].Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if overlap.Load() {
		t.Fatal("two holders of one key at once")
	}
	if n := len(locks.locks); n != 0 {
		t.Fatalf("%d locks kept after every holder left", n)
	}
}
