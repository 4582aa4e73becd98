/* The page `tether chat --ws` serves on GET /: one self-contained HTML document
 * (style and script inline, no external resource) that joins the room over a
 * WebSocket to the same host and port. */
#ifndef TT_CLI_CHAT_PAGE_H
#define TT_CLI_CHAT_PAGE_H

#include <stddef.h>

extern const char cli_chat_page[];
extern const size_t cli_chat_page_len;

#endif
