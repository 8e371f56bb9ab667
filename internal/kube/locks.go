package kube

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// KeyLocks serialises holders of one key (the revoker and the identity controller on one
// identity; each work queue already serialises its own workers). Its zero value is ready. Locks exist only while held or awaited.
// k8s.io/utils/keymutex only offers hashed locks, which would serialise unrelated identities.
type KeyLocks struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

// Lock waits for name's lock and returns its unlock.
func (k *KeyLocks) Lock(name types.NamespacedName) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[types.NamespacedName]*keyLock{}
	}
	l := k.locks[name]
	if l == nil {
		l = &keyLock{}
		k.locks[name] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, name)
		}
		k.mu.Unlock()
	}
}
