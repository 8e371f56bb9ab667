package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// constant is a string constant of the API contract with its doc comment.
type constant struct{ name, value, doc, pkg string }

// parseContract reads the string constants of the packages in dirs (tests excluded).
func parseContract(dirs ...string) ([]constant, error) {
	var out []constant
	for _, dir := range dirs {
		files, err := parseDir(dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, s := range gd.Specs {
					groupDoc := gd.Doc
					if len(gd.Specs) > 1 {
						groupDoc = nil // a group's comment heads the group; each constant has its own
					}
					out = append(out, stringConsts(s.(*ast.ValueSpec), groupDoc, f.Name.Name)...)
				}
			}
		}
	}
	return out, nil
}

func stringConsts(vs *ast.ValueSpec, groupDoc *ast.CommentGroup, pkg string) []constant {
	var out []constant
	doc := commentText(vs.Doc)
	if doc == "" {
		doc = commentText(groupDoc)
	}
	for i, n := range vs.Names {
		if i >= len(vs.Values) || !n.IsExported() {
			continue
		}
		lit, ok := vs.Values[i].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			continue
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil {
			continue
		}
		out = append(out, constant{name: n.Name, value: v, doc: doc, pkg: pkg})
	}
	return out
}

// parseDir parses the non-test Go files of dir.
func parseDir(dir string) ([]*ast.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// walkDirs parses every package under root.
func walkDirs(root string, fn func(*ast.File)) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		files, err := parseDir(path)
		if err != nil {
			return err
		}
		for _, f := range files {
			fn(f)
		}
		return nil
	})
}

// commentText is a doc comment as one line.
func commentText(cg *ast.CommentGroup) string {
	if cg == nil {
		return ""
	}
	return strings.Join(strings.Fields(cg.Text()), " ")
}

// contractKind is the kind of a scim.nhi.dev/ name, read off its constant's name.
func contractKind(c constant) string {
	switch {
	case strings.HasSuffix(c.name, "Finalizer"):
		return "finalizer"
	case strings.HasSuffix(c.name, "Label"):
		return "label"
	default:
		return "annotation"
	}
}

func annotationsPage(cs []constant) []byte {
	rows := map[string][][]string{}
	for _, c := range cs {
		if !strings.HasPrefix(c.value, "scim.nhi.dev/") {
			continue
		}
		k := contractKind(c)
		rows[k] = append(rows[k], []string{"`" + c.value + "`", c.doc, "`" + c.pkg + "." + c.name + "`"})
	}
	var b bytes.Buffer
	b.WriteString("# Annotations, labels and finalizers\n\n")
	b.WriteString("Every `scim.nhi.dev/` name the operator reads or writes, with the Go constant that holds it.\n")
	b.WriteString("How to use the workload annotations: [workloads](../workloads.md).\n")
	for _, k := range []string{"annotation", "label", "finalizer"} {
		sort.Slice(rows[k], func(i, j int) bool { return rows[k][i][0] < rows[k][j][0] })
		b.WriteString("\n## " + strings.ToUpper(k[:1]) + k[1:] + "s\n\n")
		b.Write(table([]string{"Name", "Meaning", "Constant"}, rows[k]))
	}
	return b.Bytes()
}

// event is an Event the operator records: its type, reason and the package recording it.
type event struct{ typ, reason, pkg string }

// eventReasons finds the Events recorded under root: calls Eventf(object, related, type,
// reason, ...) whose reason is a string literal or a v1alpha1 constant.
func eventReasons(root string, contract []constant) ([]event, error) {
	byName := map[string]string{}
	for _, c := range contract {
		byName[c.name] = c.value
	}
	seen := map[event]bool{}
	err := walkDirs(root, func(f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 4 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Eventf" {
				return true
			}
			typ, reason := literal(call.Args[2], byName), literal(call.Args[3], byName)
			if typ != "" && reason != "" {
				seen[event{typ: typ, reason: reason, pkg: f.Name.Name}] = true
			}
			return true
		})
	})
	var out []event
	for e := range seen {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].reason != out[j].reason {
			return out[i].reason < out[j].reason
		}
		if out[i].typ != out[j].typ {
			return out[i].typ < out[j].typ
		}
		return out[i].pkg < out[j].pkg
	})
	return out, err
}

// literal is the string an expression names: a string literal, or a v1alpha1 constant.
func literal(e ast.Expr, consts map[string]string) string {
	switch x := e.(type) {
	case *ast.BasicLit:
		if v, err := strconv.Unquote(x.Value); err == nil {
			return v
		}
	case *ast.SelectorExpr:
		return consts[x.Sel.Name]
	}
	return ""
}

func conditionsPage(cs []constant, events []event) []byte {
	var types, reasons [][]string
	for _, c := range cs {
		if c.pkg != "v1alpha1" {
			continue
		}
		switch {
		case strings.HasPrefix(c.name, "Condition"):
			types = append(types, []string{"`" + c.value + "`", c.doc})
		case strings.HasPrefix(c.name, "Reason"):
			reasons = append(reasons, []string{"`" + c.value + "`", c.doc})
		}
	}
	var ev [][]string
	for _, e := range events {
		ev = append(ev, []string{"`" + e.reason + "`", e.typ, e.pkg})
	}
	var b bytes.Buffer
	b.WriteString("# Conditions and Events\n\n")
	b.WriteString("The condition types and reasons of ServiceIdentity, ScimTarget and ClusterScimTarget (constants of\n")
	b.WriteString("`api/v1alpha1`), and the Events the operator records. What to do about each reason:\n")
	b.WriteString("[troubleshooting](../troubleshooting.md). Ready, Reconciling and Stalled follow kstatus, so\n")
	b.WriteString("GitOps tools judge health from them ([GitOps](../gitops.md)).\n\n")
	b.WriteString("## Condition types\n\n")
	b.Write(table([]string{"Type", "Meaning"}, types))
	b.WriteString("\n## Condition reasons\n\n")
	b.Write(table([]string{"Reason", "Meaning"}, reasons))
	b.WriteString("\n## Events\n\n")
	b.WriteString("Reasons recorded by name in the code, with the package that records them (a few more are\n")
	b.WriteString("computed, e.g. the Ready reason of a failed SCIM call).\n\n")
	b.Write(table([]string{"Reason", "Type", "Recorded by"}, ev))
	return b.Bytes()
}
