"""robustrain.core.errors: one-line messages that keep the innermost reason."""

from robustrain.core.errors import BadInputError, user_error_message


def test_user_error_message_keeps_the_innermost_reason_and_its_key():
    try:
        try:
            try:
                raise ValueError("Expected a <class 'float'>. Got value: nan")
            except ValueError as inner:
                raise TypeError("Parser key \"eps\":\n  Expected a <class 'float'>. Got value: nan") from inner
        except TypeError as middle:
            raise ValueError("Problem with given class_path 'robustrain.training.FGSMTraining':\n  ...") from middle
    except ValueError as error:
        try:
            raise TypeError('Parser key "model":\n  Does not validate against any of the Union subtypes') from error
        except TypeError as outer:
            assert user_error_message(outer) == "model.init_args.eps: got nan, but only a finite number is valid here"
    own = ValueError("eps=2.0 must be in [0, 1]")
    assert user_error_message(own) == "eps=2.0 must be in [0, 1]"
    try:
        try:
            raise KeyError("hidden")
        except KeyError:
            raise BadInputError("x.ckpt is not a readable checkpoint") from None
    except BadInputError as error:
        assert user_error_message(error) == "x.ckpt is not a readable checkpoint"  # `from None` ends the chain


def test_a_key_taking_several_types_says_what_it_takes():
    try:
        try:
            raise ValueError("Expected a <class 'bool'>. Got value: abc")
        except ValueError as inner:
            raise TypeError("Parser key \"seed_everything\":\n  Expected a <class 'bool'>. Got value: abc") from inner
    except TypeError as error:
        message = user_error_message(error)
    assert message == "seed_everything: expected an integer seed, or true (draw one) / false (no seeding), got abc"
