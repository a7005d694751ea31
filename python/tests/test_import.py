import mpkit


def test_the_extension_module_loads():
    assert isinstance(mpkit.__all__, list)
