"""The scenario pack: each file tells one story (its stem is the scenario's name).

These are plain files loaded by path (``bench/scenario/loader.py``); this folder is installed as the
package ``bench.pack`` only so that the pack ships with cometbench.  Copy one to write your own.
"""
