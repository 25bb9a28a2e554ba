"""The report: what journals say, for people.

``data`` (journals into cells, entries, trends and shard checks), ``html`` (the self-contained
HTML reliability report), ``text`` (one case in a line, for the console), ``findings`` (the
findings page, from the matrix alone).  Nothing here imports the run or a backend.
"""
