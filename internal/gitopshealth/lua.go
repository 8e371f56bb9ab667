// Package gitopshealth runs the Argo CD health checks the operator ships
// (config/argocd/health/<group>/<Kind>/health.lua) the way Argo CD runs a health check from
// argocd-cm: github.com/yuin/gopher-lua, the object as the global `obj`, only the package, base
// and table libraries opened, one second to finish, and a table with `status` and `message`
// returned. The tests use it on real objects; the operator does not import it.
package gitopshealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// The health statuses Argo CD accepts from a script; anything else becomes Unknown.
const (
	Healthy     = "Healthy"
	Progressing = "Progressing"
	Degraded    = "Degraded"
	Suspended   = "Suspended"
	Missing     = "Missing"
	Unknown     = "Unknown"
)

// Status is what a health script returned.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// ScriptPath is where the health check of group/kind lives under dir (Argo CD's
// resource_customizations layout).
func ScriptPath(dir, group, kind string) string {
	return filepath.Join(dir, group, kind, "health.lua")
}

// LoadScript reads the health check of group/kind under dir.
func LoadScript(dir, group, kind string) (string, error) {
	b, err := os.ReadFile(ScriptPath(dir, group, kind))
	return string(b), err
}

// Evaluate runs script with obj (an object as decoded from JSON: an unstructured object's
// content) as the global `obj`.
func Evaluate(script string, obj map[string]any) (Status, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// argocd-cm scripts get these libraries unless the override sets useOpenLibs (Argo CD
	// also loads a reduced os library, which these scripts do not use).
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Status{}, fmt.Errorf("opening the Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Status{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Status{}, fmt.Errorf("expected a table from the health script, not %s", l.Get(-1).Type())
	}
	st := Status{}
	if s, ok := ret.RawGetString("status").(lua.LString); ok {
		st.Status = string(s)
	}
	if m, ok := ret.RawGetString("message").(lua.LString); ok {
		st.Message = string(m)
	}
	switch st.Status {
	case Healthy, Progressing, Degraded, Suspended, Missing, Unknown:
		return st, nil
	}
	return Status{Status: Unknown, Message: "Lua returned an invalid health status"}, nil
}

// toLua converts a decoded JSON value the way Argo CD does: numbers (float64 from
// encoding/json, int64 from Kubernetes' unstructured decoder) become Lua numbers, JSON arrays
// Lua sequences, objects tables, and null nil (so a null field reads as absent).
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
