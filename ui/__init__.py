"""Small widgets shared by the pages. No SQL here: data comes through store/ functions."""
