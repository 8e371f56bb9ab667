package kube

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestAnnotationsChangedExcept(t *testing.T) {
	p := AnnotationsChangedExcept("ours/a", "ours/b")
	for _, tc := range []struct {
		name     string
		old, new map[string]string
		want     bool
	}{
		{"nothing changed", map[string]string{"x": "1"}, map[string]string{"x": "1"}, false},
		{"only ours added", nil, map[string]string{"ours/a": "1", "ours/b": "2"}, false},
		{"only ours changed and removed", map[string]string{"ours/a": "1", "ours/b": "2"}, map[string]string{"ours/a": "3"}, false},
		{"another added", nil, map[string]string{"x": "1"}, true},
		{"another changed beside ours", map[string]string{"x": "1"}, map[string]string{"x": "2", "ours/a": "1"}, true},
		{"another removed", map[string]string{"x": "1", "ours/a": "1"}, map[string]string{"ours/a": "1"}, true},
		{"another emptied", map[string]string{"x": "1"}, map[string]string{"x": ""}, true},
	} {
		e := event.UpdateEvent{ObjectOld: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Annotations: tc.old}},
			ObjectNew: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Annotations: tc.new}}}
		if got := p.Update(e); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
