# Turns controller/dashboard/index.html into a C header (build tree only) holding the page as
# a byte array: cmake -DIN=<html> -DOUT=<header> -P embed_dashboard.cmake. The controller
# serves it at GET / (controller/api.c); the page itself is written separately.
if(NOT EXISTS "${IN}")
	message(FATAL_ERROR "dashboard page ${IN} is missing")
endif()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR size "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}.tmp"
	"/* Generated from controller/dashboard/index.html by embed_dashboard.cmake. */\n"
	"#ifndef TAPIO_DASHBOARD_HTML_H\n#define TAPIO_DASHBOARD_HTML_H\n"
	"#include <stddef.h>\n"
	"static const unsigned char dashboard_html[] = {\n${bytes}0x00};\n"
	"static const size_t dashboard_html_len = ${size};\n#endif\n")
file(RENAME "${OUT}.tmp" "${OUT}")
