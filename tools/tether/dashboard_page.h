/* The page --dashboard serves on GET / (dashboard_page.c). */
#ifndef TT_CLI_DASHBOARD_PAGE_H
#define TT_CLI_DASHBOARD_PAGE_H

#include <stddef.h>

extern const char cli_dashboard_page[];
extern const size_t cli_dashboard_page_len;

#endif
