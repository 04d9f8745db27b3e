#!/usr/bin/env python3
"""Applies a unified diff (git diff) by text: each hunk's old lines must occur exactly once in the file, and are
replaced by its new lines. Line numbers are ignored, so a staged variant still applies after unrelated changes to
the same file, and fails loudly (exit 2) where its own context changed. Needs only Python (no git, no patch)."""
import sys


def hunks(diff_lines):
    path, old, new, inside = None, [], [], False
    for line in diff_lines:
        if line.startswith('+++ '):
            path = line[4:].strip()
            path = path[2:] if path.startswith('b/') else path
            continue
        if line.startswith('--- ') or line.startswith('diff ') or line.startswith('index '):
            continue
        if line.startswith('@@'):
            if inside:
                yield path, old, new
            old, new, inside = [], [], True
            continue
        if not inside:
            continue
        if line.startswith('\\'):
            continue
        tag, text = line[:1], line[1:]
        if tag in (' ', ''):
            old.append(text)
            new.append(text)
        elif tag == '-':
            old.append(text)
        elif tag == '+':
            new.append(text)
    if inside:
        yield path, old, new


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: apply_diff.py FILE.diff')
    with open(sys.argv[1]) as f:
        diff = f.read().split('\n')
    if diff and diff[-1] == '':
        diff.pop()
    edits = {}
    for path, old, new in hunks(diff):
        edits.setdefault(path, []).append(('\n'.join(old) + '\n', '\n'.join(new) + '\n'))
    for path, pairs in edits.items():
        with open(path) as f:
            text = f.read()
        for i, (old, new) in enumerate(pairs):
            n = text.count(old)
            if n != 1:
                print(f'{sys.argv[1]}: hunk {i + 1} of {path} matches {n} times (the file changed)', file=sys.stderr)
                sys.exit(2)
            text = text.replace(old, new)
        with open(path, 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main()
