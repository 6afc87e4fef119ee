fn show_catalog() -> Result<(), LockError> {
    let __lock_names: [::std::string::String; 1] = [::std::format!("catalog")];
    let __lock_client: ::core::option::Option<::lock_runtime::__private::LockClient> = ::core::option::Option::None;
    let __lock_options: ::lock_runtime::__private::LockOptions = ::lock_runtime::__private::options(
            ::lock_runtime::__private::Duration::from_millis(10000u64),
        )
        .wait(
            ::lock_runtime::__private::Wait::For(
                ::lock_runtime::__private::Duration::from_millis(1000u64),
            ),
        )
        .mode(::lock_runtime::__private::Mode::Read);
    ::lock_runtime::__private::run_blocking(
        __lock_client,
        &__lock_names,
        &__lock_options,
        ::lock_runtime::__private::LockedReturn::from_lock_error,
        move |_: ::lock_runtime::__private::LockHandle| {
            #[allow(
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let __lock_fake_return: Result<(), LockError> = loop {};
                return __lock_fake_return;
            }
            Ok(())
        },
    )
}
