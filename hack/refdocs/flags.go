package main

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// flagLine is the first line of a flag in Go's flag.PrintDefaults: "  -name type".
var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\S+))?$`)

// defaultSuffix is PrintDefaults' " (default X)" at the end of a usage.
var defaultSuffix = regexp.MustCompile(` \(default (.*)\)$`)

type cliFlag struct{ name, typ, def, usage string }

// parseHelp reads the flags of a Go program's --help output.
func parseHelp(help []byte) ([]cliFlag, error) {
	var flags []cliFlag
	sc := bufio.NewScanner(bytes.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		if m := flagLine.FindStringSubmatch(line); m != nil {
			typ := m[2]
			if typ == "" {
				typ = "bool"
			}
			flags = append(flags, cliFlag{name: m[1], typ: typ})
			continue
		}
		if strings.HasPrefix(line, "    \t") && len(flags) > 0 {
			f := &flags[len(flags)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(line))
		}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("no flags in the --help output")
	}
	for i := range flags {
		if m := defaultSuffix.FindStringSubmatch(flags[i].usage); m != nil {
			flags[i].def = m[1]
			flags[i].usage = strings.TrimSuffix(flags[i].usage, m[0])
		}
	}
	return flags, nil
}

// libraryFlag tells the flags controller-runtime adds (the kubeconfig, zap's logging flags).
func libraryFlag(name string) bool {
	return name == "kubeconfig" || strings.HasPrefix(name, "zap-")
}

func flagsPage(help []byte) ([]byte, error) {
	flags, err := parseHelp(help)
	if err != nil {
		return nil, err
	}
	var own, lib [][]string
	for _, f := range flags {
		def := f.def
		if def == "" && f.typ != "bool" {
			def = "-"
		} else if def == "" {
			def = "false"
		}
		row := []string{"`--" + f.name + "`", f.typ, "`" + def + "`", f.usage}
		if libraryFlag(f.name) {
			lib = append(lib, row)
		} else {
			own = append(own, row)
		}
	}
	var b bytes.Buffer
	b.WriteString("# The manager's flags\n\n")
	b.WriteString("Read off `manager --help`. The chart sets them from its values (charts/scim-operator/README.md);\n")
	b.WriteString("`extraArgs` passes any other. Durations take Go's syntax (`90s`, `15m`, `1h30m`).\n\n")
	head := []string{"Flag", "Type", "Default", "What it does"}
	b.Write(table(head, own))
	b.WriteString("\n## Logging and the kubeconfig (controller-runtime)\n\n")
	b.Write(table(head, lib))
	return b.Bytes(), nil
}
