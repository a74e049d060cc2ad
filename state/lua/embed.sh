#!/bin/sh
# Turns each state/lua/NAME.lua into `const char state_lua_NAME[]` so the scripts ship inside
# the binary. Usage: embed.sh file.lua... > state_lua.c
set -e
echo "/* Generated from the state/lua scripts by state/lua/embed.sh. Do not edit. */"
for f in "$@"; do
    name=$(basename "$f" .lua)
    echo "extern const char state_lua_${name}[];"
    echo "const char state_lua_${name}[] ="
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
    echo "    ;"
done
